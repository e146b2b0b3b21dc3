-- Argo CD health check for helmdeck.dev/v1alpha1 SidecarPolicy.
--
-- The body of resource.customizations.health.helmdeck.dev_SidecarPolicy in argocd-cm
-- (argocd/argocd-cm-patch.yaml embeds this file). The mapping and the reasons for it are in
-- docs/argocd.md; the conditions and reasons are the operator's (docs/reconcile.md).
-- Argo CD runs this with gopher-lua (Lua 5.1) and only the base, table and os libraries:
-- no string or math functions, so nothing here uses them.

local function condition(status, kind)
  if type(status.conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if type(c) == "table" and c.type == kind then
      return c
    end
  end
  return nil
end

-- A verdict carrying the condition's own message (or `fallback` when it has none).
local function verdict(health, c, fallback)
  local message = fallback
  if c ~= nil and type(c.message) == "string" and c.message ~= "" then
    message = c.message
  elseif c ~= nil and type(c.reason) == "string" then
    message = c.reason
  end
  return { status = health, message = message }
end

local function waiting(generation)
  if type(generation) == "number" then
    return "waiting for the operator to observe generation " .. tostring(generation)
  end
  return "waiting for the operator to report a status"
end

local function health(o)
  local metadata = o.metadata or {}
  local status = o.status

  if metadata.deletionTimestamp ~= nil then
    return { status = "Progressing", message = "being deleted" }
  end

  local generation = metadata.generation
  if type(status) ~= "table" or type(status.conditions) ~= "table" then
    return { status = "Progressing", message = waiting(generation) }
  end
  local observed = status.observedGeneration
  if type(generation) == "number" and (type(observed) ~= "number" or observed < generation) then
    return { status = "Progressing", message = waiting(generation) }
  end

  local valid = condition(status, "Valid")
  if valid ~= nil and valid.status == "False" then
    return verdict("Degraded", valid, "the spec does not translate")
  end

  local applied = condition(status, "Applied")
  if applied == nil then
    return { status = "Progressing", message = waiting(generation) }
  end
  if applied.status == "True" then
    -- Loaded by every bound session, or no session uses it (NoSessions).
    return verdict("Healthy", applied, "applied")
  end
  if applied.status == "False" and (applied.reason == "SessionsRefused" or applied.reason == "Invalid") then
    return verdict("Degraded", applied, "bound sessions could not load the policy")
  end
  -- Progressing: "k of N bound sessions have loaded" the revision.
  return verdict("Progressing", applied, "being applied")
end

return health(obj)
