-- Ask bkops for a new run of the same spec: stamp bkops.io/rerun-requested-at with the time (UTC).
-- An annotation, not spec: it is not in git, so Argo CD does not revert it.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["bkops.io/rerun-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
