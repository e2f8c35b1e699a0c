-- Argo CD resource actions of a bkops job resource. Actions that patch spec (cancel, suspend,
-- resume) make the live object differ from git: commit the same change, or self-heal reverts it.
local actions = {}
local phase = nil
if obj.status ~= nil then
  phase = obj.status.phase
end
local spec = obj.spec or {}
local inFlight = phase == "Submitting" or phase == "Running" or phase == "WaitingForUser"
local finished = phase == "Succeeded" or phase == "Failed" or phase == "Cancelled"

actions["rerun"] = {
  ["disabled"] = not finished or spec.suspend == true,
  ["iconClass"] = "fa fa-fw fa-redo",
  ["displayName"] = "Rerun the job",
}
actions["cancel"] = {
  ["disabled"] = not inFlight or spec.cancel == true,
  ["iconClass"] = "fa fa-fw fa-stop",
  ["displayName"] = "Cancel the running job",
}
actions["suspend"] = {
  ["disabled"] = spec.suspend == true,
  ["iconClass"] = "fa fa-fw fa-pause",
  ["displayName"] = "Suspend new runs",
}
actions["resume"] = {
  ["disabled"] = spec.suspend ~= true,
  ["iconClass"] = "fa fa-fw fa-play",
  ["displayName"] = "Resume",
}
return actions
