-- slurmctld's job_submit/lua script (slurm.conf JobSubmitPlugins=lua): refuses, at submission, the one
-- kind of job this dev cluster's nodes cannot start, so the user gets the cause and the fix from sbatch
-- instead of a node that dies.
--
-- A job asks slurmd to build its environment from the user's login shell (SLURM_GET_USER_ENV=1, which
-- sbatch sets for --export=NONE, --export=<list> and --get-user-env). slurmd starts that shell in new PID
-- and mount namespaces; an unprivileged container may not create them, and Slurm treats the refused
-- clone(2) as fatal, so slurmd exits and the node goes down with the job on it.

local REFUSAL = "this dev cluster cannot give a job the user's login environment "
  .. "(sbatch --export=NONE, --export=<list> such as --export=ALL,NAME=value, or --get-user-env): "
  .. "its nodes run unprivileged, and Slurm needs new PID and mount namespaces to load it. "
  .. "fix: drop the option and pass values in the submitting environment "
  .. "(NAME=value sbatch ..., exported with the default --export=ALL), as script arguments, "
  .. "or set them in the script"

local function wants_login_environment(job_desc)
  -- Only a batch job has an environment here (srun and salloc pass theirs to the step); asking for it
  -- on one of those logs a line on every srun, the harness's own probe job included.
  if job_desc.script == nil then
    return false
  end
  local env = job_desc.environment
  return type(env) == "table" and env["SLURM_GET_USER_ENV"] == "1"
end

function slurm_job_submit(job_desc, part_list, submit_uid)
  if wants_login_environment(job_desc) then
    slurm.log_user("%s", REFUSAL)
    return slurm.ERROR
  end
  return slurm.SUCCESS
end

function slurm_job_modify(job_desc, job_rec, part_list, modify_uid)
  return slurm.SUCCESS
end

return slurm.SUCCESS
