-- POST /v1/login for a rotating user (each on its own device).
local users = tonumber(os.getenv("USERS") or "100")
local n = 0
function request()
  n = n + 1
  local u = n % users
  local body = string.format('{"username":"user%d","password":"correct horse","device_id":"w%d"}', u, u)
  return wrk.format("POST", "/v1/login", {["content-type"] = "application/json"}, body)
end
