-- Calls that do not block a Lua thread: requests and request sets.
local tand = require "tand"
local helper = require "spec.helper"

-- A policy server whose "slow" op sleeps ms and whose "count" op says how
-- many calls its handler has run (so a spec can tell a skipped call).
local function slow_server(extra)
  local opts = {
    min_number = 1, max_number = 1000,
    policy = function()
      return {
        init = function() return { calls = 0 } end,
        handle_call = function(r, from, state, machine)
          state.calls = state.calls + 1
          if r[1] == "slow" then
            require("tand").sleep(r[2])
            return "slept", r[2]
          elseif r[1] == "count" then
            return state.calls
          end
          return machine:default(r)
        end,
      }
    end,
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(tand.start(opts))
end

describe("a request", function()
  it("is pending, then ready with what m:call would return", function()
    local m = slow_server()
    local r = assert(m:send_request("slow", 200))
    assert.is_false(r:ready())
    assert.matches("pending", tostring(r))
    assert.is_true(helper.wait_for(function() return r:ready() end))
    assert.same({ "slept", 200 }, { r:wait() })
    assert.same({ "slept", 200 }, { r:wait() }) -- kept: the same again
    assert.same({ 1 }, { assert(m:send_request("queue_new_number")):wait() })
    m:stop()
  end)

  it("returns at once, the server running on another thread", function()
    local m = slow_server()
    local t0 = tand.now()
    local r = assert(m:send_request("slow", 300))
    assert.is_true(tand.now() - t0 < 200)
    assert.same({ "slept", 300 }, { r:wait() })
    m:stop()
  end)

  it("times a wait out and stays pending for a later wait", function()
    local m = slow_server()
    local r = assert(m:send_request("slow", 300))
    local v, err, detail = r:wait(10)
    assert.is_nil(v); assert.equal("timeout", err)
    assert.matches("still pending", detail)
    assert.is_false(r:ready())
    assert.same({ "slept", 300 }, { r:wait(5000) })
    m:stop()
  end)

  it("ends at its own deadline, the handle's timeout from the send", function()
    local m = slow_server()
    m:settimeout(100)
    local r = assert(m:send_request("slow", 600))
    local v, err = r:wait() -- no wait given: until the request's deadline
    assert.is_nil(v); assert.equal("timeout", err)
    assert.is_true(r:ready())
    v, err = r:wait() -- and so it stays
    assert.is_nil(v); assert.equal("timeout", err)
    m:stop()
  end)

  it("cancelled before its server starts it, is skipped", function()
    local m = slow_server()
    local busy = assert(m:send_request("slow", 300))
    local r = assert(m:send_request("queue_new_number"))
    assert.is_true(r:cancel())
    assert.is_false(r:cancel()) -- once
    local v, err = r:wait()
    assert.is_nil(v); assert.equal("cancelled", err)
    busy:wait()
    assert.equal(2, m:call("count")) -- "slow", then "count": not r
    assert.equal(1, m:queue_new_number()) -- its number was never taken
    m:stop()
  end)

  it("cancelled while its server runs it, loses its reply", function()
    local m = slow_server()
    local r = assert(m:send_request("slow", 200))
    assert.is_true(helper.wait_for(function()
      return m:stats().calls >= 1 -- (stats count calls as they start)
    end))
    assert.is_true(r:cancel())
    assert.equal("cancelled", select(2, r:wait()))
    assert.equal(2, m:call("count")) -- it ran; its reply was dropped
    m:stop()
  end)

  it("cancelled once finished keeps its reply", function()
    local m = slow_server()
    local r = assert(m:send_request("queue_new_number"))
    assert.equal(1, r:wait())
    assert.is_false(r:cancel())
    assert.equal(1, r:wait())
    m:stop()
  end)

  it("dropped while pending is cancelled", function()
    local m = slow_server()
    local busy = assert(m:send_request("slow", 300))
    do
      local r = assert(m:send_request("queue_new_number"))
      r = nil -- luacheck: ignore
    end
    collectgarbage(); collectgarbage()
    busy:wait()
    assert.equal(2, m:call("count"))
    m:stop()
  end)

  it("closes with <close>", function()
    local m = slow_server()
    local busy = assert(m:send_request("slow", 300))
    do
      local r <close> = assert(m:send_request("queue_new_number"))
    end
    busy:wait()
    assert.equal(2, m:call("count"))
    m:stop()
  end)

  it("is busy at once on a full mailbox, and noproc once ended", function()
    local m = slow_server({ mailbox = 1 })
    local first = assert(m:send_request("slow", 300))
    assert.is_true(helper.wait_for(function() return m:stats().calls >= 1 end))
    local queued = assert(m:send_request("count")) -- fills the mailbox
    local t0 = tand.now()
    local none, err = m:send_request("count")
    assert.is_nil(none); assert.equal("busy", err)
    assert.is_true(tand.now() - t0 < 200)
    first:wait(); queued:wait()
    m:stop()
    none, err = m:send_request("count")
    assert.is_nil(none); assert.equal("noproc", err)
  end)

  it("speaks the cqueues poll protocol", function()
    local m = slow_server()
    m:settimeout(2000)
    local r = assert(m:send_request("slow", 100))
    assert.is_number(r:pollfd())
    assert.equal("r", r:events())
    local t = r:timeout()
    assert.is_true(t > 1 and t <= 2)
    r:wait()
    assert.equal(0, r:timeout()) -- ready: a poll returns at once
    m:stop()
  end)

  it("refuses bad arguments", function()
    local m = slow_server()
    assert.has_error(function() m:send_request() end)
    assert.has_error(function() m:send_request(1) end)
    assert.has_error(function() m:send_request("x", print) end)
    local r = assert(m:send_request("queue_new_number"))
    assert.has_error(function() r:wait(-1) end)
    assert.has_error(function() r:wait("10") end)
    r:wait()
    m:stop()
  end)
end)

describe("a request set", function()
  it("hands each reply out once, from many servers", function()
    local servers = {}
    for i = 1, 3 do
      servers[i] = assert(tand.start{ min_number = 100 * i,
                                       max_number = 100 * i + 99 })
    end
    local set = tand.requests()
    local want = {}
    for i = 1, 30 do
      local s = servers[i % 3 + 1]
      local id = assert(set:call(s, "queue_new_number"))
      want[id] = true
    end
    assert.equal(30, set:count())
    local got, numbers = 0, {}
    while set:count() > 0 do
      local id, n = set:wait(5000)
      assert.is_true(want[id]); want[id] = nil
      assert.is_nil(numbers[n]); numbers[n] = true
      got = got + 1
    end
    assert.equal(30, got)
    local none, err = set:wait()
    assert.is_nil(none); assert.equal("empty", err)
    set:close()
    for i = 1, 3 do servers[i]:stop() end
  end)

  it("polls without waiting, and waits with a deadline", function()
    local m = slow_server()
    local set = tand.requests()
    assert.is_nil(set:poll())
    local id = set:call(m, "slow", 200)
    assert.is_nil(set:poll())
    local v, err = set:wait(10)
    assert.is_nil(v); assert.equal("timeout", err)
    assert.is_number(set:timeout())
    assert.is_true(helper.wait_for(function()
      local got, a, b = set:poll()
      if got then assert.same({ id, "slept", 200 }, { got, a, b }) end
      return got ~= nil
    end))
    set:close()
    m:stop()
  end)

  it("gives a failed call's reply with its id", function()
    local m = slow_server()
    m:settimeout(50)
    local set = tand.requests()
    local id = set:call(m, "slow", 300)
    local got, v, err = set:wait()
    assert.equal(id, got); assert.is_nil(v); assert.equal("timeout", err)
    set:close()
    m:stop()
  end)

  it("cancels what is pending when closed or dropped", function()
    local m = slow_server()
    local busy = assert(m:send_request("slow", 300))
    local set = tand.requests()
    set:call(m, "queue_new_number")
    set:close()
    set:close() -- twice is fine
    assert.has_error(function() set:call(m, "count") end,
                     "attempt to use a closed request set")
    do
      local other = tand.requests()
      other:call(m, "queue_new_number")
    end
    collectgarbage(); collectgarbage()
    busy:wait()
    assert.equal(2, m:call("count"))
    assert.equal(1, m:queue_new_number())
    m:stop()
  end)

  it("is readable on its descriptor while a reply waits", function()
    local uv = require "luv" -- (scripts/setup installs lua-luv)
    local m = slow_server()
    local set = tand.requests()
    assert.equal(set:fd(), set:pollfd())
    assert.equal("r", set:events())
    local readable = false
    local function readable_now()
      readable = false
      local p = uv.new_poll(set:fd())
      p:start("r", function() readable = true end)
      uv.run("nowait")
      p:stop(); p:close()
      uv.run("nowait")
      return readable
    end
    assert.is_false(readable_now()) -- nothing sent
    local id = set:call(m, "slow", 100)
    assert.is_false(readable_now()) -- sent, not answered
    assert.is_true(helper.wait_for(readable_now))
    assert.equal(id, (set:poll()))
    assert.is_false(readable_now()) -- taken: drained
    set:close()
    m:stop()
  end)

  it("stays readable while any reply waits, however many came at once", function()
    local uv = require "luv"
    local m = assert(tand.start{ min_number = 1, max_number = 100 })
    local set = tand.requests()
    for _ = 1, 3 do set:call(m, "queue_new_number") end
    assert.is_true(helper.wait_for(function()
      return m:stats().calls >= 3
    end))
    local function readable_now()
      local readable = false
      local p = uv.new_poll(set:fd())
      p:start("r", function() readable = true end)
      uv.run("nowait")
      p:stop(); p:close(); uv.run("nowait")
      return readable
    end
    assert.is_true(helper.wait_for(readable_now))
    for left = 2, 0, -1 do
      assert.is_number((set:poll()))
      assert.equal(left > 0, readable_now()) -- until the last is taken
    end
    set:close()
    m:stop()
  end)

  it("skips a call past its deadline, and a late reply is a timeout", function()
    local m = slow_server()
    local busy = assert(m:send_request("slow", 300)) -- holds the server
    m:settimeout(50)
    local set = tand.requests()
    local queued = set:call(m, "queue_new_number") -- expires in the queue
    local late = assert(m:send_request("slow", 200)) -- (after busy)
    m:settimeout(5000)
    busy:wait()
    tand.sleep(100) -- the owner looks only now
    local id, v, err = set:wait()
    assert.equal(queued, id); assert.is_nil(v); assert.equal("timeout", err)
    v, err = late:wait()
    assert.is_nil(v); assert.equal("timeout", err)
    assert.equal(1, m:queue_new_number()) -- the expired one never ran
    set:close()
    m:stop()
  end)

  it("keeps ids unique when a finalizer calls through it mid-call", function()
    local m = assert(tand.start{ min_number = 1, max_number = 100000 })
    local big = {}
    for i = 1, 2000 do big[i] = { i, { i } } end -- its encoding allocates
    local set = tand.requests()
    local armed, inner, outer = false, {}, {}
    local mt = { __gc = function()
      if armed then
        armed = false
        inner[#inner + 1] = set:call(m, "queue_new_number")
      end
    end }
    collectgarbage("incremental", 100, 1000) -- cycles end within a call
    for _ = 1, 50 do
      collectgarbage()
      setmetatable({}, mt)
      armed = true
      outer[#outer + 1] = set:call(m, "queue_new_number", big)
      armed = false
    end
    collectgarbage("incremental", 200, 100) -- Lua's defaults
    assert.is_true(#inner > 0) -- finalizers did run inside calls
    local got = {}
    while set:count() > 0 do
      local id = assert(set:wait(5000))
      assert.is_nil(got[id]); got[id] = true
    end
    for _, id in ipairs(outer) do assert.is_true(got[id]) end
    for _, id in ipairs(inner) do assert.is_true(got[id]) end
    -- a finalizer that closes the set while a call encodes: an error
    local doomed = tand.requests()
    collectgarbage()
    setmetatable({}, { __gc = function() doomed:close() end })
    local ok, err = pcall(doomed.call, doomed, m, "queue_new_number", big)
    if not ok then assert.matches("closed request set", err) end
    set:close()
    m:stop()
  end)

  it("wakes a coroutine polling a request that another one cancels", function()
    local cqueues = require "cqueues"
    local m = slow_server()
    local r = assert(m:send_request("slow", 2000))
    local cq = cqueues.new()
    local woke
    cq:wrap(function()
      while not r:ready() do cqueues.poll(r) end
      woke = select(2, r:wait())
    end)
    cq:wrap(function()
      cqueues.sleep(0.05)
      assert.is_true(r:cancel())
    end)
    local t0 = tand.now()
    assert(cq:loop(5))
    assert.equal("cancelled", woke)
    assert.is_true(tand.now() - t0 < 1500)
    m:stop()
  end)

  it("refuses what is not a machine, and a call without an op", function()
    local set = tand.requests()
    local m = slow_server()
    assert.has_error(function() set:call({}, "x") end)
    assert.has_error(function() set:call(m) end)
    assert.equal(0, set:count())
    set:close()
    m:stop()
  end)
end)

-- A policy that asks another server from its callbacks without waiting:
-- ("ask", name, timeout or false, op, ...) sends machine:send_request to
-- the server of that name with op, ... and returns the id; every
-- {"reply", id, ...} info is kept, and "replies" returns them.
local function asker(extra)
  local opts = {
    min_number = 1, max_number = 1000,
    policy = function()
      return {
        init = function() return { replies = {} } end,
        handle_call = function(r, from, state, machine)
          if r[1] == "ask" then
            local other = require("tand").whereis(r[2])
            if r[3] then other:settimeout(r[3]) end
            return machine:send_request(other, table.unpack(r, 4))
          elseif r[1] == "ask_self" then
            return machine:send_request(machine:self(), "queue_new_number")
          elseif r[1] == "ask_bad" then
            return machine:send_request(r[2], "queue_new_number")
          elseif r[1] == "replies" then
            return state.replies
          end
          return machine:default(r)
        end,
        handle_info = function(msg, state)
          if msg[1] == "reply" then state.replies[#state.replies + 1] = msg end
        end,
      }
    end,
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(tand.start(opts))
end

local function replies_of(m, n)
  local got
  assert.is_true(helper.wait_for(function()
    got = m:call("replies")
    return #got >= n
  end))
  return got
end

describe("a policy's requests (machine:send_request)", function()
  it("come back to handle_info as {'reply', id, ...values}", function()
    local slow = slow_server{ name = "asked_slow" }
    local m = asker()
    local id = assert(m:call("ask", "asked_slow", false, "slow", 50))
    assert.equal("integer", math.type(id))
    local id2 = assert(m:call("ask", "asked_slow", false,
                              "queue_new_number"))
    assert.is_true(id2 > id)
    local got = replies_of(m, 2)
    assert.same({ { "reply", id, "slept", 50 }, { "reply", id2, 1 } }, got)
    m:stop(); slow:stop()
  end)

  it("do not hold the policy's own callers up", function()
    local slow = slow_server{ name = "asked_sleeper" }
    local m = asker()
    assert(m:call("ask", "asked_sleeper", false, "slow", 600))
    local t0, worst = tand.now(), 0
    for i = 1, 20 do
      local t = tand.now()
      assert.equal(i, m:queue_new_number())
      worst = math.max(worst, tand.now() - t)
    end
    assert.same({}, m:call("replies")) -- still asleep
    assert.is_true(tand.now() - t0 < 500)
    assert.is_true(worst < 300)
    assert.same({ { "reply", 1, "slept", 600 } }, replies_of(m, 1))
    m:stop(); slow:stop()
  end)

  it("end in nil, token, detail: an error reply, and the deadline", function()
    local slow = slow_server{ name = "asked_erring" }
    local m = asker()
    local a = assert(m:call("ask", "asked_erring", false,
                            "serve_next_queued_number"))
    local b = assert(m:call("ask", "asked_erring", 300, "slow", 900))
    local got = replies_of(m, 2)
    assert.equal(a, got[1][2]); assert.is_nil(got[1][3])
    assert.equal("empty_queue", got[1][4])
    assert.equal(b, got[2][2]); assert.is_nil(got[2][3])
    assert.equal("timeout", got[2][4])
    m:stop(); slow:stop()
  end)

  it("have the handle's timeout, not what is left of the callback", function()
    local slow = slow_server{ name = "asked_outlives" }
    local m = asker{ callback_timeout = 100 }
    local id = assert(m:call("ask", "asked_outlives", false, "slow", 400))
    assert.same({ { "reply", id, "slept", 400 } }, replies_of(m, 1))
    m:stop(); slow:stop()
  end)

  it("may ask the policy's own server", function()
    local m = asker()
    local id = assert(m:call("ask_self"))
    assert.same({ { "reply", id, 1 } }, replies_of(m, 1))
    m:stop()
  end)

  it("are refused at once on a full mailbox, and an ended server", function()
    local slow = slow_server{ name = "asked_full", mailbox = 1 }
    local m = asker()
    assert(m:call("ask", "asked_full", false, "slow", 300))
    assert.is_true(helper.wait_for(function() -- it runs that one
      return slow:stats().mailbox_depth == 0
    end))
    assert(m:call("ask", "asked_full", false, "slow", 1))  -- fills the mailbox
    local t0 = tand.now()
    local v, err = m:call("ask", "asked_full", false, "slow", 1)
    assert.is_nil(v); assert.equal("busy", err)
    assert.is_true(tand.now() - t0 < 250)
    slow:stop()
    local gone = tand.start{ initial_number = 0, name = "asked_gone" }
    local handle = tand.whereis("asked_gone")
    gone:stop()
    v, err = m:call("ask_bad", handle)
    assert.is_nil(v); assert.equal("noproc", err)
    m:stop()
  end)

  it("refuse what is not a machine, or no op", function()
    local m = asker()
    local v, err, detail = m:call("ask_bad", "not a machine")
    assert.is_nil(v); assert.equal("server_crashed", err)
    assert.matches("machine", detail)
    m = asker()
    local slow = slow_server{ name = "asked_noop" }
    v, err, detail = m:call("ask", "asked_noop", false)
    assert.is_nil(v); assert.equal("server_crashed", err)
    m:stop(); slow:stop()
  end)

  it("are abandoned when the policy ends, and leave nothing behind", function()
    local slow = slow_server{ name = "asked_abandoned" }
    local m = asker()
    for _ = 1, 3 do
      assert(m:call("ask", "asked_abandoned", false, "slow", 200))
    end
    assert.is_true(helper.wait_for(function()
      return slow:stats().mailbox_depth == 2
    end))
    m:stop()
    -- the two it had not started are skipped
    assert.is_true(helper.wait_for(function()
      return slow:stats().mailbox_depth == 0
    end))
    tand.sleep(250)
    assert.is_true(slow:call("count") <= 3)
    slow:stop()
  end)
end)
