-- POST /v1/messages with a rotating sender (token) and a fresh
-- client_msg_id per request. TOKENS: a file of "token peer_id" lines.
local pairs_ = {}
for line in io.lines(os.getenv("TOKENS")) do
  local t, p = line:match("(%S+) (%S+)")
  table.insert(pairs_, {t, p})
end
local n = 0
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local pad = string.rep("x", 100)
function request()
  n = n + 1
  local p = pairs_[(n % #pairs_) + 1]
  local body = string.format(
    '{"client_msg_id":"w%d-%d","to_user_id":%s,"body":{"kind":"TEXT","content":"%s"}}',
    tid or 0, n, p[2], pad)
  return wrk.format("POST", "/v1/messages",
    {["content-type"] = "application/json", ["authorization"] = "Bearer " .. p[1]}, body)
end
