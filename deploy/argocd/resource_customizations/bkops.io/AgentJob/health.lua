-- Argo CD health of a bkops job resource (ProcessJob, Taskflow, AgentJob, ExecuteJob).
-- Runs without Lua's string and math libraries (Argo CD's default for custom checks).
local hs = {}

local function condition(status, ctype)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == ctype then
      return c
    end
  end
  return nil
end

local function say(status, fallback)
  if status.message ~= nil and status.message ~= "" then
    return status.message
  end
  return fallback
end

local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for bkops to pick up the resource"
  return hs
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for bkops to observe generation " .. generation
  return hs
end

local phase = status.phase
local suspend = obj.spec ~= nil and obj.spec.suspend == true
local finished = phase == "Succeeded" or phase == "Failed" or phase == "Cancelled"

-- A rerun asked for with the bkops.io/rerun-requested-at annotation (the "rerun" action) but not
-- started yet: the next run is on its way, unless suspend holds it back.
local annotations = obj.metadata.annotations
local rerunAt = nil
if annotations ~= nil then
  rerunAt = annotations["bkops.io/rerun-requested-at"]
end
if rerunAt ~= nil and rerunAt ~= status.lastHandledRerunAt and finished and not suspend then
  hs.status = "Progressing"
  hs.message = "Rerun requested at " .. rerunAt .. ", waiting for bkops to start it"
  return hs
end

local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = say(status, stalled.message or stalled.reason or "Stalled")
  return hs
end
if phase == "Unknown" then
  hs.status = "Degraded"
  hs.message = say(status, "Whether the job was submitted is unknown: a person must resolve it")
  return hs
end
if phase == "Failed" or phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = say(status, "Job " .. phase)
  return hs
end
if phase == "WaitingForUser" then
  hs.status = "Suspended"
  hs.message = say(status, "Waiting for a person to act in BlueKing")
  return hs
end
-- suspend holds back new runs only: a run in flight goes on, and a finished success stays Healthy.
if phase == "Suspended" or (suspend and phase ~= "Submitting" and phase ~= "Running" and phase ~= "Succeeded") then
  hs.status = "Suspended"
  hs.message = say(status, "Suspended: no new run starts while spec.suspend is true")
  return hs
end
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = say(status, "Job succeeded")
  return hs
end
if phase == nil or phase == "Pending" or phase == "Submitting" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = say(status, "Job " .. (phase or "Pending"))
  return hs
end
hs.status = "Unknown"
hs.message = "Unknown phase " .. phase
return hs
