-- Argo CD health check for helmdeck.dev/v1alpha1 SessionPool.
--
-- The body of resource.customizations.health.helmdeck.dev_SessionPool in argocd-cm
-- (argocd/argocd-cm-patch.yaml embeds this file). The mapping and the reasons for it are in
-- docs/argocd.md; the conditions and reasons are the operator's (docs/reconcile.md).
-- Argo CD runs this with gopher-lua (Lua 5.1) and only the base, table and os libraries:
-- no string or math functions, so nothing here uses them.

local STUCK = {
  -- Ready False for one of these reasons: no retry fills the pool until someone edits the
  -- pool or its baseline policy, or the operator configuration.
  PolicyNotFound = true,
  PolicyInvalid = true,
  EgressGuarded = true,
  TenancyRefused = true,
  GatewayNotConfigured = true,
}

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
  local spec = o.spec or {}
  local status = o.status

  -- Deleting: the finalizer removes the idle sandboxes, then the object goes.
  if metadata.deletionTimestamp ~= nil then
    return { status = "Progressing", message = "being deleted; waiting for its idle sandboxes to be removed" }
  end

  -- Not looked at yet, or not since the last spec edit (a scale is one): the status
  -- describes an older spec.
  local generation = metadata.generation
  if type(status) ~= "table" then
    return { status = "Progressing", message = waiting(generation) }
  end
  local observed = status.observedGeneration
  if type(generation) == "number" and (type(observed) ~= "number" or observed < generation) then
    return { status = "Progressing", message = waiting(generation) }
  end

  local ready = condition(status, "Ready")

  -- Scaled to zero: nothing to keep, so nothing can be missing (not even the baseline).
  if spec.replicas == 0 then
    return verdict("Healthy", ready, "scaled to zero: no idle sandboxes kept")
  end

  if ready == nil then
    return { status = "Progressing", message = waiting(generation) }
  end
  if ready.status == "True" then
    -- PoolFilled: spec.replicas idle sandboxes are ready to be claimed.
    return verdict("Healthy", ready, "filled")
  end
  if ready.status == "False" and STUCK[ready.reason] then
    return verdict("Degraded", ready, "the pool cannot boot sandboxes")
  end
  -- PoolFilling, a Gateway* code, or Unknown: the operator keeps booting and retrying;
  -- sessions meanwhile are created cold.
  return verdict("Progressing", ready, "filling")
end

return health(obj)
