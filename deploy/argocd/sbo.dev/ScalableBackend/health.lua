-- Argo CD health of a sbo.dev ScalableBackend, from its kstatus-style status:
--   observedGeneration behind metadata.generation  -> Progressing (the operator has not seen the change)
--   Stalled=True                                   -> Degraded (a person must act; the message says what)
--   Ready=True                                     -> Healthy
--   Reconciling=True                               -> Progressing
--   Ready=False                                    -> Degraded
--   no status yet                                  -> Progressing
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report a status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready, stalled, reconciling
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  elseif condition.type == "Reconciling" then
    reconciling = condition
  end
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or stalled.reason or "Stalled"
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.message or (ready ~= nil and ready.message) or "Reconciling"
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = ready.message or ready.reason or "Not ready"
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
end
return hs
