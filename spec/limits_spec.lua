-- The binding's edges: huge, negative and string timeouts, names with NUL,
-- handles that follow names through messages and across processes, stop
-- waiting for the end, casts to a full mailbox, and more values than a
-- message carries as a list.
local tand = require "tand"
local helper = require "spec.helper"

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
teardown(function() os.execute("rm -rf " .. dir) end)

local interpreter = helper.interpreter

local function run(script, ...)
  local file = dir .. "/child.lua"
  local f = assert(io.open(file, "w"))
  f:write(script)
  f:close()
  local cmd = "timeout 60 " .. interpreter() .. " " .. file
  for _, a in ipairs({ ... }) do cmd = cmd .. " " .. a end
  local p = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = p:read("a")
  assert.is_true(p:close(), out)
  return out
end

local HUGE = { math.huge, 1e300, math.maxinteger, 2^62, 1e13 }

local function deli(extra)
  local opts = { min_number = 1, max_number = 1000 }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return tand.start(opts)
end

-- A policy whose handle_call "slow" sleeps ms, then answers "slept".
local function sleeper()
  return { handle_call = function(r, from, state, machine)
    if r[1] == "slow" then
      require("tand").sleep(r[2])
      return "slept"
    end
    return machine:default(r)
  end }
end

describe("huge timeouts mean no deadline", function()
  it("in t:join, which neither spins nor returns early", function()
    -- In a process of its own, whose CPU time is the join's alone; a join
    -- that never returns is killed by `timeout` and fails the test.
    local out = run([[
      local tand = require "tand"
      for _, x in ipairs({ math.huge, 1e300, math.maxinteger, 2^62, 1e13 }) do
        local t = tand.spawn(function()
          require("tand").sleep(500)
          return "done"
        end)
        tand.sleep(100) -- the thread's state is set up: the join only waits
        local cpu, wall = os.clock(), tand.now()
        local v, err = t:join(x)
        print(x, v or err, os.clock() - cpu, tand.now() - wall)
      end
    ]])
    local n = 0
    for x, v, cpu, wall in out:gmatch("(%S+)\t(%S+)\t(%S+)\t(%S+)\n") do
      n = n + 1
      cpu, wall = tonumber(cpu), tonumber(wall)
      assert.equal("done", v, "join(" .. x .. ")")
      assert.is_true(wall >= 200, ("join(%s) after %s ms"):format(x, wall))
      -- a spinning join burns about as much CPU time as it waits
      assert.is_true(cpu < wall / 1000 / 2,
                     ("join(%s) used %s s of CPU in %s ms"):format(x, cpu, wall))
    end
    assert.equal(5, n, out)
  end)

  it("in call_timeout and settimeout", function()
    for _, x in ipairs(HUGE) do
      local m = assert(tand.start{ policy = sleeper, call_timeout = x })
      assert.equal("slept", m:call("slow", 300), "call_timeout " .. x)
      assert.is_true(m:settimeout(5))
      assert.is_true(m:settimeout(x))
      assert.equal("slept", m:call("slow", 300), "settimeout " .. x)
      m:stop()
    end
  end)

  it("in auto_shutdown_timeout", function()
    for _, x in ipairs(HUGE) do
      local m = assert(deli{ auto_shutdown_timeout = x })
      assert.equal(math.huge, m:report_state().auto_shutdown_timeout)
      tand.sleep(50)
      assert.is_true(m:alive())
      m:stop()
    end
  end)

  it("in callback_timeout", function()
    for _, x in ipairs(HUGE) do
      local m = assert(tand.start{ policy = sleeper, callback_timeout = x })
      assert.same({ "slept" }, { m:call("slow", 300) }, "callback " .. x)
      m:stop()
    end
  end)

  it("and negative or NaN ones are refused", function()
    local m = assert(deli())
    for _, x in ipairs({ -1, -0.5, -math.huge, 0 / 0, 1.5 }) do
      for _, k in ipairs({ "auto_shutdown_timeout", "call_timeout" }) do
        local v, err, detail = deli{ [k] = x }
        assert.is_nil(v)
        assert.equal("invalid_configuration", err)
        assert.matches(k, detail, 1, true)
      end
      local v, err, detail = tand.start{ policy = sleeper,
                                         callback_timeout = x }
      assert.is_nil(v)
      assert.equal("invalid_configuration", err)
      assert.matches("callback_timeout", detail, 1, true)
      assert.has_error(function() m:settimeout(x) end)
      local t = tand.spawn(function() return 1 end)
      assert.has_error(function() t:join(x) end)
      assert.equal(1, t:join())
    end
    m:stop()
  end)
end)

describe("numbers given as strings", function()
  it("are refused by every numeric option, naming it", function()
    local cases = {
      { auto_shutdown_timeout = "100" }, { call_timeout = "100" },
      { mailbox = "10" }, { min_number = "1" },
      { policy = sleeper, callback_timeout = "100" },
      { policy = sleeper, memory_limit = "1000000" },
    }
    for _, opts in ipairs(cases) do
      local key
      for k, v in pairs(opts) do if k ~= "policy" then key = k end end
      local v, err, detail = deli(opts)
      assert.is_nil(v, key)
      assert.equal("invalid_configuration", err)
      assert.matches(key, detail, 1, true)
    end
  end)

  it("are refused by settimeout and join", function()
    local m = assert(deli())
    assert.has_error(function() m:settimeout("100") end)
    local t = tand.spawn(function() return 1 end)
    assert.has_error(function() t:join("100") end)
    assert.equal(1, t:join(10000))
    m:stop()
  end)
end)

describe("names", function()
  it("with a NUL are refused by tand.start", function()
    local v, err, detail = deli{ name = "svc\0one" }
    assert.is_nil(v)
    assert.equal("invalid_configuration", err)
    assert.matches("name", detail, 1, true)
    -- so "svc\0one" and "svc\0two" never collide on "svc"
    assert.is_nil(tand.whereis("svc"))
  end)

  it("with a NUL are refused for a supervisor and its children", function()
    local sup, err, detail = tand.supervise({}, {
      { name = "kid\0one", min_number = 1, max_number = 9 } })
    assert.is_nil(sup)
    assert.equal("invalid_configuration", err)
    assert.matches("name", detail, 1, true)
    sup, err = tand.supervise({ name = "sup\0x" }, {})
    assert.is_nil(sup)
    assert.equal("invalid_configuration", err)
    assert.is_nil(tand.whereis("kid"))
  end)

  it("that cannot be names raise in tand.whereis", function()
    assert.has_error(function() tand.whereis("svc\0one") end)
    assert.has_error(function() tand.whereis("") end)
    assert.has_error(function() tand.whereis(("x"):rep(256)) end)
    assert.has_error(function() tand.whereis(42) end)
    local v, err = tand.whereis(("x"):rep(255))
    assert.is_nil(v)
    assert.equal("noproc", err)
  end)
end)

describe("a handle from tand.whereis", function()
  it("still follows its name in a tand.spawn thread", function()
    local first = assert(deli{ name = "limits_follow" })
    local h = assert(tand.whereis("limits_follow"))
    assert.equal(1, h:queue_new_number())
    assert.is_true(first:stop())
    local second = assert(tand.start{ min_number = 100, max_number = 200,
                                      name = "limits_follow" })
    local t = tand.spawn(function(h) return h:queue_new_number() end, h)
    assert.equal(100, t:join(10000))
    second:stop()
  end)

  it("still follows its name inside a message to a policy", function()
    local keeper = assert(tand.start{ policy = function()
      return { handle_call = function(r, from, state, machine)
        if r[1] == "keep" then state.h = r[2]; return true end
        if r[1] == "use" then return state.h:queue_new_number() end
        return machine:default(r)
      end, init = function() return {} end }
    end })
    local first = assert(deli{ name = "limits_follow2" })
    assert.is_true(keeper:call("keep", tand.whereis("limits_follow2")))
    assert.equal(1, keeper:call("use"))
    assert.is_true(first:stop())
    local second = assert(tand.start{ min_number = 500, max_number = 600,
                                      name = "limits_follow2" })
    assert.equal(500, keeper:call("use"))
    second:stop()
    keeper:stop()
  end)

  it("and a plain handle stays with its own server", function()
    local first = assert(deli{ name = "limits_plain" })
    assert.is_true(first:stop())
    local second = assert(deli{ name = "limits_plain" })
    local t = tand.spawn(function(h) return h:queue_new_number() end, first)
    local v, err = t:join(10000)
    assert.is_nil(v)
    assert.equal("noproc", err)
    second:stop()
  end)
end)

describe("a handle in a journaled state, in another process", function()
  local policy = [[
    local function keeper()
      return { init = function() return {} end,
               handle_call = function(r, from, state, machine)
        if r[1] == "keep" then
          state.named, state.plain, state.found = r[2], r[3], r[4]
          return true
        end
        if r[1] == "probe" then
          local out = {}
          for _, k in ipairs({ "named", "plain", "found" }) do
            local v, err = state[k]:queue_new_number()
            out[#out + 1] = k .. "=" .. tostring(v or err)
          end
          return table.concat(out, " ")
        end
        return machine:default(r)
      end }
    end
  ]]

  it("follows its server's name, or has ended; never another server", function()
    local journal = dir .. "/handles.db"
    -- First process: a named server, an unnamed one and a journaled policy
    -- that keeps handles to them; prints the largest id it used.
    local out = run(policy .. [[
      local tand = require "tand"
      local named = assert(tand.start{ min_number = 1, max_number = 9,
                                       name = "limits_remote" })
      local plain = assert(tand.start{ min_number = 11, max_number = 19 })
      local k = assert(tand.start{ policy = keeper, journal = arg[1] })
      assert(k:call("keep", named, plain, tand.whereis("limits_remote")))
      local top = 0
      for _, m in ipairs({ named, plain, k }) do
        top = math.max(top, tonumber(tostring(m):match("(%d+)")))
      end
      k:stop()
      print(top)
    ]], journal)
    local top = assert(tonumber(out:match("(%d+)")), out)
    -- Second process: unrelated servers take those ids first, then the
    -- name goes to a new server, then the policy resumes.
    out = run(policy .. [[
      local tand = require "tand"
      local id = 0
      while id < tonumber(arg[2]) do
        local m = assert(tand.start{ min_number = 1000, max_number = 1999 })
        id = tonumber(tostring(m):match("(%d+)"))
      end
      assert(tand.start{ min_number = 500, max_number = 599,
                         name = "limits_remote" })
      local k = assert(tand.start{ policy = keeper, journal = arg[1] })
      print(k:call("probe"))
    ]], journal, top)
    assert.matches("named=500 plain=noproc found=501", out, 1, true)
  end)
end)

describe("m:stop", function()
  -- A policy whose terminate takes 300 ms.
  local function slow_end()
    return { terminate = function() require("tand").sleep(300) end }
  end

  it("returns true only once the server has ended", function()
    local m = assert(tand.start{ policy = slow_end, name = "limits_stop" })
    assert.is_true(m:stop())
    assert.is_true(m:stop() == nil) -- ended already: nil, "noproc"
    local again = assert(tand.start{ policy = slow_end, name = "limits_stop" })
    assert.is_true(again:stop("shutdown"))
  end)

  it("with a timeout of 0 says timeout while the server has not ended",
     function()
    local m = assert(tand.start{ policy = slow_end, name = "limits_stop0" })
    m:settimeout(0)
    local ok, err = m:stop()
    assert.is_nil(ok)
    assert.equal("timeout", err)
    -- the name is free once it has ended
    local again
    assert.is_true(helper.wait_for(function()
      again = tand.start{ min_number = 1, max_number = 9,
                          name = "limits_stop0" }
      return again ~= nil
    end, 5000))
    assert.is_true(again:stop())
  end)

  it("with a short timeout says timeout, and a second stop waits", function()
    local m = assert(tand.start{ policy = slow_end, name = "limits_stop1" })
    m:settimeout(20)
    local ok, err = m:stop()
    assert.is_nil(ok)
    assert.equal("timeout", err)
    m:settimeout(5000)
    ok, err = m:stop() -- already stopping: waits for the end
    assert.is_nil(ok)
    assert.equal("noproc", err)
    local again = assert(tand.start{ min_number = 1, max_number = 9,
                                     name = "limits_stop1" })
    again:stop()
  end)
end)

describe("a full mailbox", function()
  -- handle_cast "hold" marks the gate (a deluxe machine) and waits until
  -- the test queues a second number there.
  local function gated()
    return { handle_cast = function(r)
      if r[1] == "hold" then
        local gate = r[2]
        gate:queue_new_number()
        while #gate:report_state().queue < 2 do require("tand").sleep(2) end
      end
    end }
  end

  it("makes casts, sends and resets busy at once; calls wait", function()
    local gate = assert(deli())
    local m = assert(tand.start{ policy = gated, mailbox = 1,
                                 call_timeout = 3000,
                                 callback_timeout = 60000 })
    assert.is_true(m:cast("hold", gate))
    assert.is_true(helper.wait_for(function()
      return #gate:report_state().queue >= 1
    end, 10000))
    assert.is_true(m:cast("fill")) -- the one free place
    for _, try in ipairs({
      function() return m:cast("more") end,
      function() return m:send("info") end,
      function() return m:reset_state() end,
    }) do
      local t0 = tand.now()
      local ok, err = try()
      assert.is_nil(ok)
      assert.equal("busy", err)
      assert.is_true(tand.now() - t0 < 1000, "waited " .. (tand.now() - t0))
    end
    m:settimeout(300)
    local t0 = tand.now()
    local v, err = m:queue_new_number() -- waits for room until its deadline
    assert.is_nil(v)
    assert.equal("timeout", err)
    assert.is_true(tand.now() - t0 >= 250, "gave up after " .. (tand.now() - t0))
    gate:queue_new_number() -- open
    m:settimeout(5000)
    assert.is_true(helper.wait_for(function() return m:cast("x") end, 5000))
    assert.equal(1, m:queue_new_number())
    m:stop()
    gate:stop()
  end)
end)

describe("more than 250 values", function()
  local function lister()
    return { handle_call = function(r, from, state, machine)
      if r[1] == "many" then
        local t = {}
        for i = 1, r[2] do t[i] = i end
        return table.unpack(t, 1, r[2])
      end
      if r[1] == "count" then return #r - 1 end
      return machine:default(r)
    end }
  end

  local function list(n)
    local t = {}
    for i = 1, n do t[i] = i end
    return t
  end

  it("in a reply give bad_value, and the server goes on", function()
    local m = assert(tand.start{ policy = lister })
    assert.equal(250, select("#", m:call("many", 250)))
    local v, err, detail = m:call("many", 300)
    assert.is_nil(v)
    assert.equal("bad_value", err)
    assert.matches("250", detail, 1, true)
    assert.equal(1, m:queue_new_number())
    m:stop()
  end)

  it("in a call's arguments travel as its request table", function()
    local m = assert(tand.start{ policy = lister })
    assert.equal(300, m:call("count", table.unpack(list(300))))
    m:stop()
  end)

  it("as tand.spawn arguments or results give a clear error", function()
    local ok, why = pcall(tand.spawn, function() end, table.unpack(list(300)))
    assert.is_false(ok)
    assert.matches("250", why, 1, true)
    local t = tand.spawn(function()
      local t = {}
      for i = 1, 300 do t[i] = i end
      return table.unpack(t)
    end)
    local v, err, detail = t:join(10000)
    assert.is_nil(v)
    assert.equal("thread_failed", err)
    assert.matches("250", detail, 1, true)
  end)
end)

describe("a named policy's own handle in its journaled state", function()
  it("follows the name in another process", function()
    local journal = dir .. "/self.db"
    local policy = [[
      local function selfish()
        return { handle_call = function(r, from, state, machine)
          if r[1] == "keep" then state.me = machine:self(); return true end
          if r[1] == "probe" then
            local v, err = state.me:call("echo")
            return tostring(v or err)
          end
          if r[1] == "echo" then return "echoed" end
          return machine:default(r)
        end }
      end
    ]]
    run(policy .. [[
      local tand = require "tand"
      local k = assert(tand.start{ policy = selfish, journal = arg[1],
                                   name = "limits_self" })
      assert(k:call("keep"))
      k:stop()
    ]], journal)
    -- in the second process the policy, started again under its name,
    -- reaches itself through the kept handle (calling_self: it is its
    -- own server, not an ended or unrelated one)
    local out = run(policy .. [[
      local tand = require "tand"
      for _ = 1, 5 do assert(tand.start{ min_number = 1, max_number = 9 }) end
      local k = assert(tand.start{ policy = selfish, journal = arg[1],
                                   name = "limits_self" })
      print(k:call("probe"))
    ]], journal)
    assert.matches("calling_self", out, 1, true)
  end)
end)
