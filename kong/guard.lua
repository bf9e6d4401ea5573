-- keypool fail-closed guard: post-function, access phase, runs after keypool (priority 1000 > -1000).
-- keypool never answers from JS; it records its decision. No record = plugin server down or phase failed: 503.
local d = kong.ctx.shared.keypool_decision
if type(d) == "table" and d.action == "allow" then return end
if type(d) == "table" and d.action == "deny" and tonumber(d.status) then
  return kong.response.exit(tonumber(d.status), d.body, d.headers)
end
-- No decision: keypool may not have hidden the client's credential headers from serialized logs; hide them here.
for _, h in ipairs({ "x-api-key", "api-key", "x-goog-api-key" }) do kong.log.set_serialize_value("request.headers." .. h, "REDACTED") end
return kong.response.exit(503, '{"error":{"type":"api_error","code":"keypool_unavailable","message":"keypool is unavailable."}}', { ["content-type"] = "application/json" })
