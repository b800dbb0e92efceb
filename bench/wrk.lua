-- The requests of every benchmark case, and one summary line that bench/load.py reads.
--
--   wrk -t2 -c8 -d6s --latency -s bench/wrk.lua URL -- MODE ARGS...
--
--   get   TOKEN PATH[,PATH...]    GET a path, picked at random per request when several
--   post  TOKEN PATH BODY         POST the same JSON body every time
--   login USERNAME[,...] PASSWORD POST /user/login, the usernames in turn
--   pay   TOKEN                   the pay flow: place an order, then pay it (see below)
--
-- TOKEN "-" sends no Authorization header. A case with one fixed request is static
-- (wrk formats it once), so the load generator costs as little as it can.
--
-- The pay flow chains requests on each wrk thread: a placed order's response queues its
-- id, and the thread's next request pays the oldest queued order (else places another).
-- So about half the requests place and half pay; "flows" counts the payments made.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_number", #threads)
end

local function split(text)
   local items = {}
   for item in string.gmatch(text, "[^,]+") do
      items[#items + 1] = item
   end
   return items
end

local function headers_for(token, json)
   local headers = {}
   if json then
      headers["Content-Type"] = "application/json"
   end
   if token ~= "-" then
      headers["Authorization"] = "Bearer " .. token
   end
   return headers
end

local function use_static(method, path, headers, body)
   wrk.method, wrk.path, wrk.body = method, path, body
   for name, value in pairs(headers) do
      wrk.headers[name] = value
   end
end

local modes = {}

function modes.get(token, paths)
   local headers = headers_for(token, false)
   paths = split(paths)
   if #paths == 1 then
      return use_static("GET", paths[1], headers)
   end
   request = function()
      return wrk.format("GET", paths[math.random(#paths)], headers)
   end
end

function modes.post(token, path, body)
   use_static("POST", path, headers_for(token, true), body)
end

function modes.login(usernames, password)
   local bodies = {}
   for i, name in ipairs(split(usernames)) do
      bodies[i] = string.format('{"username": "%s", "password": "%s"}', name, password)
   end
   local headers, turn = headers_for("-", true), 0
   request = function()
      turn = turn % #bodies + 1
      return wrk.format("POST", "/user/login", headers, bodies[turn])
   end
end

function modes.pay(token)
   local headers, unpaid, first, last = headers_for(token, true), {}, 1, 0
   local place = wrk.format("POST", "/order/", headers, '{"product": "bench lamp", "price": 12.5}')
   flows = 0
   request = function()
      local order_id = unpaid[first]
      if order_id == nil then
         return place
      end
      unpaid[first], first = nil, first + 1
      return wrk.format("POST", "/payment/", headers, '{"order_id": ' .. order_id .. "}")
   end
   response = function(status, _, body)
      if status == 201 and body:find('"order placed"', 1, true) then
         last = last + 1
         unpaid[last] = body:match('"id":%s*(%d+)')
      elseif status == 201 then
         flows = flows + 1
      end
   end
end

function init(args)
   math.randomseed(os.time() * 100 + thread_number)
   modes[args[1]](unpack(args, 2))
end

function done(summary, latency)
   local flows = 0
   for _, thread in ipairs(threads) do
      flows = flows + (thread:get("flows") or 0)
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, '
         .. '"max_us": %d, "flows": %d, "errors": {"connect": %d, "read": %d, "write": %d, '
         .. '"status": %d, "timeout": %d}}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      latency.mean, latency.max, flows, errors.connect, errors.read, errors.write,
      errors.status, errors.timeout
   ))
end
