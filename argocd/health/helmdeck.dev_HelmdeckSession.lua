-- Argo CD health check for helmdeck.dev/v1alpha1 HelmdeckSession.
--
-- The body of resource.customizations.health.helmdeck.dev_HelmdeckSession in argocd-cm
-- (argocd/argocd-cm-patch.yaml embeds this file). The mapping and the reasons for it are in
-- docs/argocd.md; the phases and condition reasons are the operator's (docs/reconcile.md).
-- Argo CD runs this with gopher-lua (Lua 5.1) and only the base, table and os libraries:
-- no string or math functions, so nothing here uses them.

local REFUSED = {
  -- A Ready session whose PolicyApplied is False for one of these reasons runs a policy
  -- revision the user did not ask for, and no retry changes that without an edit.
  StaticChangeRejected = true,
  PolicyLoadFailed = true,
  PolicyRejected = true,
  PolicyInvalid = true,
  EgressGuarded = true,
  TenancyRefused = true,
}

local UNRESOLVABLE = {
  -- A Pending session whose Ready is False for one of these reasons waits for an edit of
  -- the SidecarPolicy it names: it does not translate, or the platform's egress guard
  -- refuses it.
  PolicyInvalid = true,
  EgressGuarded = true,
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

  -- Deleting: the finalizer removes the sandbox, then the object goes.
  if metadata.deletionTimestamp ~= nil or (type(status) == "table" and status.phase == "Terminating") then
    local sandbox = type(status) == "table" and status.sandbox or nil
    if type(sandbox) == "table" and type(sandbox.name) == "string" then
      return { status = "Progressing", message = "being deleted; waiting for sandbox " .. sandbox.name .. " to be removed" }
    end
    return { status = "Progressing", message = "being deleted" }
  end

  -- Not looked at yet, or not since the last spec edit: the status describes an older spec.
  local generation = metadata.generation
  if type(status) ~= "table" or status.phase == nil then
    return { status = "Progressing", message = waiting(generation) }
  end
  local observed = status.observedGeneration
  if type(generation) == "number" and (type(observed) ~= "number" or observed < generation) then
    return { status = "Progressing", message = waiting(generation) }
  end

  local phase = status.phase
  local ready = condition(status, "Ready")

  -- The gateway could not be asked (after the client's own retries): the operator keeps the
  -- phase and retries with back-off, but nobody can vouch for the sandbox meanwhile.
  if ready ~= nil and ready.status == "Unknown" then
    return verdict("Degraded", ready, "the gateway could not be asked")
  end

  if phase == "Failed" then
    return verdict("Degraded", ready, "failed")
  end
  if phase == "Suspended" then
    return verdict("Suspended", ready, "suspended")
  end
  if phase == "Expired" then
    local lifetime = spec.lifetime or {}
    if lifetime.onExpiry == "Retain" then
      -- The end state the user declared, like a completed Job: kept for the record.
      return verdict("Healthy", ready, "expired")
    end
    -- onExpiry Delete: the operator is deleting the session.
    return verdict("Progressing", ready, "expired; being deleted")
  end
  if phase == "Pending" then
    if ready ~= nil and UNRESOLVABLE[ready.reason] then
      -- Nothing to wait for: the referenced SidecarPolicy must be fixed first.
      return verdict("Degraded", ready, "the policy is invalid")
    end
    return verdict("Progressing", ready, "pending")
  end
  if phase == "Provisioning" then
    return verdict("Progressing", ready, "provisioning")
  end
  if phase == "Ready" then
    local applied = condition(status, "PolicyApplied")
    if applied ~= nil and applied.status == "False" then
      if REFUSED[applied.reason] then
        return verdict("Degraded", applied, "the sandbox keeps an older policy")
      end
      -- PolicyPending, RecreatePending, Recreating, PolicyNotFound: on its way.
      return verdict("Progressing", applied, "the policy is being applied")
    end
    if applied ~= nil and applied.status == "Unknown" then
      return verdict("Progressing", applied, "the policy is being applied")
    end
    -- The ports: a refusal by the gateway is not retried without an edit; a change on its way is.
    local exposed = condition(status, "EndpointsExposed")
    if exposed ~= nil and exposed.status == "False" then
      return verdict("Degraded", exposed, "a port could not be exposed")
    end
    if exposed ~= nil and exposed.status == "Unknown" then
      return verdict("Progressing", exposed, "the ports are being exposed")
    end
    -- The providers, likewise: a refusal waits for an edit, a change is on its way.
    local providers = condition(status, "ProvidersAttached")
    if providers ~= nil and providers.status == "False" then
      return verdict("Degraded", providers, "a provider could not be attached")
    end
    if providers ~= nil and providers.status == "Unknown" then
      return verdict("Progressing", providers, "the providers are being attached")
    end
    return verdict("Healthy", ready, "ready")
  end
  return { status = "Unknown", message = "unknown phase " .. tostring(phase) }
end

return health(obj)
