"""Transports: where commands run and files live. ``HostTransport`` is this machine, ``SSHTransport`` a
login node over SSH (its connection and commands in ``ssh_connection``, paramiko's channels and SFTP in
``ssh_channel``, host keys and connection errors in ``ssh_keys``); ``wanted_files`` builds the one command
that says which of many files exist.

Backends (``slurm.backends``) run Slurm's commands through a transport; a transport never imports a
backend (an import-linter contract, see docs/architecture.md).
"""
