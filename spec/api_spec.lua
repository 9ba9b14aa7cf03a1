-- The Lua API around the machines: handles, errors, values, names.
local tand = require "tand"
local helper = require "spec.helper"

describe("the tand module", function()
  it("has a version, a monotonic clock in ms and a sleep", function()
    assert.matches("^%d+%.%d+%.%d+$", tand.version)
    local t0 = tand.now()
    tand.sleep(20)
    assert.is_true(tand.now() - t0 >= 19)
    assert.has_error(function() tand.sleep(-1) end)
    assert.has_error(function() tand.sleep("x") end)
    assert.is_not_nil(tand.noreply)
  end)
end)

describe("machine handles", function()
  it("stop: waiting callers get noproc, later calls too", function()
    local m = assert(tand.start{ min_number = 1, max_number = 9 })
    assert.is_true(m:alive())
    assert.is_true(m:stop())
    assert.is_false(m:alive())
    local n, err, detail = m:queue_new_number()
    assert.is_nil(n); assert.equal("noproc", err); assert.is_string(detail)
    assert.equal("noproc", select(2, m:stop()))
    assert.equal("noproc", select(2, m:reset_state()))
  end)

  it("__close stops the machine", function()
    local outer
    do
      local m <close> = assert(tand.start{ min_number = 1, max_number = 9 })
      outer = tand.whereis and m
      assert.equal(1, m:queue_new_number())
    end
    assert.has_error(function() outer:queue_new_number() end,
                     "attempt to use a closed machine")
  end)

  it("__gc drops the handle without stopping the server", function()
    assert(tand.start{ min_number = 1, max_number = 9, name = "gc_deli" })
    collectgarbage(); collectgarbage()
    local m = assert(tand.whereis("gc_deli"))
    assert.equal(1, m:queue_new_number())
    m:stop()
  end)

  it("raises for a method called on something else", function()
    local m = assert(tand.start(1))
    assert.has_error(function() m.queue_new_number({}) end)
    assert.has_error(function() m.call(m, 42) end)
    m:stop()
  end)

  it("compares and prints", function()
    local m = assert(tand.start{ min_number = 1, max_number = 9, name = "eq" })
    assert.is_true(m == tand.whereis("eq"))
    assert.matches("^tand%.machine: %d+ %(alive%)$", tostring(m))
    m:stop()
    assert.matches("%(stopped%)$", tostring(m))
  end)

  it("settimeout validates and applies", function()
    local m = assert(tand.start(1))
    assert.is_true(m:settimeout(100))
    assert.is_true(m:settimeout(math.huge))
    assert.is_true(m:settimeout())
    assert.has_error(function() m:settimeout(-1) end)
    assert.has_error(function() m:settimeout("soon") end)
    m:stop()
  end)

  it("counts in stats", function()
    local m = assert(tand.start{ min_number = 1, max_number = 2 })
    m:queue_new_number(); m:queue_new_number(); m:queue_new_number()
    m:reset_state(); m:send("x")
    m:report_state()
    local s = m:stats()
    assert.equal(4, s.calls)
    assert.equal(1, s.casts)
    assert.equal(1, s.infos)
    assert.equal(1, s.errors)
    assert.equal(0, s.timeouts)
    assert.is_true(s.mailbox_peak >= 1)
    assert.is_number(s.callback_ms)
    m:stop()
  end)
end)

describe("wrong argument types", function()
  -- DESIGN: programming errors raise; expected failures return nil, token,
  -- detail. Each call below passes an argument of a wrong type.
  it("raise, for every module function and method", function()
    local m = assert(tand.start{ min_number = 1, max_number = 9 })
    local c = assert(tand.start(1))
    local sup = assert(tand.supervise({}, {}))
    local set = tand.requests()
    local r = assert(m:send_request("report_state"))
    local t = tand.spawn(function() return 1 end)
    local calls = {
      ["tand.start(nil)"] = function() return tand.start(nil) end,
      ["tand.start()"] = function() return tand.start() end,
      ["tand.start('x')"] = function() return tand.start("x") end,
      ["tand.start(true)"] = function() return tand.start(true) end,
      ["tand.start(print)"] = function() return tand.start(print) end,
      ["tand.whereis(1)"] = function() return tand.whereis(1) end,
      ["tand.whereis({})"] = function() return tand.whereis({}) end,
      ["tand.whereis()"] = function() return tand.whereis() end,
      ["tand.register(1, m)"] = function() return tand.register(1, m) end,
      ["tand.register('n', 1)"] = function() return tand.register("n", 1) end,
      ["tand.unregister({})"] = function() return tand.unregister({}) end,
      ["tand.supervise('x', {})"] = function() return tand.supervise("x", {}) end,
      ["tand.supervise({}, 'x')"] = function() return tand.supervise({}, "x") end,
      ["tand.supervise()"] = function() return tand.supervise() end,
      ["tand.sleep('x')"] = function() return tand.sleep("x") end,
      ["tand.spawn(1)"] = function() return tand.spawn(1) end,
      ["m:serve_next_queued_number({})"] =
        function() return m:serve_next_queued_number({}) end,
      ["m:call()"] = function() return m:call() end,
      ["m:call({})"] = function() return m:call({}) end,
      ["m:cast()"] = function() return m:cast() end,
      ["m:settimeout('x')"] = function() return m:settimeout("x") end,
      ["m:stop(1)"] = function() return m:stop(1) end,
      ["m:send_request(1)"] = function() return m:send_request(1) end,
      ["m:reload(1)"] = function() return m:reload(1) end,
      ["c:next(print)"] = function() return c:next(print) end,
      ["m.alive(1)"] = function() return m.alive(1) end,
      ["sup:start_child('x')"] = function() return sup:start_child("x") end,
      ["sup:terminate_child({})"] =
        function() return sup:terminate_child({}) end,
      ["sup:restart_child({})"] = function() return sup:restart_child({}) end,
      ["sup:delete_child({})"] = function() return sup:delete_child({}) end,
      ["set:wait('x')"] = function() return set:wait("x") end,
      ["r:wait('x')"] = function() return r:wait("x") end,
      ["t:join('x')"] = function() return t:join("x") end,
    }
    local returned = {}
    for name, f in pairs(calls) do
      if pcall(f) then returned[#returned + 1] = name end
    end
    table.sort(returned)
    assert.same({}, returned)
    -- a value of the right type that is not valid is an expected failure
    local v, err = tand.start(1.5)
    assert.is_nil(v); assert.equal("invalid_configuration", err)
    v, err = tand.start{ min_number = "x", max_number = 2 }
    assert.is_nil(v); assert.equal("invalid_configuration", err)
    r:wait(); t:join(); m:stop(); c:stop(); sup:stop()
  end)
end)

describe("README's error tokens", function()
  it("are exactly tand.h's, and the Lua-only thread_failed", function()
    local h = assert(io.open("core/include/tand.h")):read("a")
    local readme = assert(io.open("README.md")):read("a")
    local header, listed = {}, {}
    for token in h:gmatch('XX%(%u[%u_]*, %-%d+, "([%w_]+)"') do
      header[token] = true
    end
    local section = readme:match("\n## Errors\n(.-)\n## ")
    assert.is_string(section)
    for row in section:gmatch("\n| ([^\n]-) |") do
      for token in row:gmatch("`([%w_]+)`") do listed[token] = true end
    end
    local missing, unknown = {}, {}
    for token in pairs(header) do
      if not listed[token] then missing[#missing + 1] = token end
    end
    for token in pairs(listed) do
      if not header[token] and token ~= "thread_failed" then
        unknown[#unknown + 1] = token
      end
    end
    table.sort(missing); table.sort(unknown)
    assert.same({}, missing)
    assert.same({}, unknown)
    assert.is_true(next(header) ~= nil)
  end)
end)

describe("stats().errors", function()
  -- A call counts as an error when its reply is a failure: a status < 0,
  -- which is also what a policy's nil, token [, detail] reply becomes when
  -- token is one of tand's. The same failures count on every machine.
  it("counts the same failures on deluxe, counter and policy machines",
     function()
    local d = assert(tand.start{ min_number = 1, max_number = 2 })
    local p = assert(tand.start{ min_number = 1, max_number = 2,
      policy = function()
        local noreply = require("tand").noreply
        local P = {}
        function P.handle_call(r, from, state, machine)
          if r[1] == "mine" then return nil, "empty_queue", "none" end
          if r[1] == "own_token" then return nil, "not_a_tand_token" end
          if r[1] == "later" then
            machine:reply(from, nil, "priority_number_not_found")
            return noreply
          end
          if r[1] == "fine" then return 1 end
          return machine:default(r)
        end
        return P
      end })
    for _, m in ipairs{ d, p } do
      local n, err = m:serve_next_queued_number()   -- empty_queue: 1
      assert.is_nil(n); assert.equal("empty_queue", err)
      assert.equal(1, m:queue_new_number())
      assert.equal(2, m:queue_new_number())
      n, err = m:queue_new_number()                 -- full: 2
      assert.is_nil(n); assert.equal("all_possible_numbers_are_in_use", err)
      n, err = m:serve_next_queued_number(7)        -- not queued: 3
      assert.is_nil(n); assert.equal("priority_number_not_found", err)
      n, err = m:call("serve_next_queued_number")   -- encoded: none
      assert.equal(1, n)
      n, err = m:call("bogus")                      -- unknown: 4
      assert.is_nil(n); assert.equal("unknown_request", err)
      assert.equal(4, m:stats().errors)
    end
    -- a policy's own failures, returned or deferred, count too; a token
    -- that is not tand's is a value like any other
    local v, err, detail = p:call("mine")
    assert.is_nil(v); assert.equal("empty_queue", err)
    assert.equal("none", detail)
    v, err = p:call("later")
    assert.is_nil(v); assert.equal("priority_number_not_found", err)
    v, err = p:call("own_token")
    assert.is_nil(v); assert.equal("not_a_tand_token", err)
    assert.equal(1, p:call("fine"))
    assert.equal(6, p:stats().errors)
    local c = assert(tand.start(5))
    assert.equal(5, c:next())
    v, err = c:call("bogus")
    assert.is_nil(v); assert.equal("unknown_request", err)
    v, err = c:call("next", 1, 2)
    assert.is_nil(v); assert.equal("unknown_request", err)
    assert.equal(2, c:stats().errors)
    d:stop(); p:stop(); c:stop()
  end)
end)

describe("m:call of a built-in op", function()
  it("gives what the op's method gives, on every kind of machine", function()
    local c = assert(tand.start(7))
    assert.equal(7, c:call("next", "ann"))
    assert.equal(8, c:call("next"))
    assert.same({ 9, "ann" }, { c:next("ann"), select(2, c:report()) })
    assert.equal(10, assert(c:send_request("next", "bob")):wait())
    assert.same({ 11, "bob" }, { c:report() })
    c:stop()
    local d = assert(tand.start{ min_number = 1, max_number = 9 })
    assert.equal(1, d:call("queue_new_number"))
    assert.equal(2, d:call("queue_new_number"))
    assert.equal(2, d:call("serve_next_queued_number", 2))
    local v, err, detail = d:call("serve_next_queued_number", "x")
    assert.is_nil(v); assert.equal("unknown_request", err)
    assert.matches("integer", detail)
    assert.same({ 1 }, d:call("report_state").queue)
    assert.equal(1, d:call("serve_next_queued_number"))
    d:stop()
    -- a policy gets the same request table either way
    local p = assert(tand.start{ min_number = 1, max_number = 9,
      policy = function()
        return { handle_call = function(r) return r[1], r[2], #r end }
      end })
    assert.same({ "next", "x", 2 }, { p:call("next", "x") })
    assert.same({ "next", "x", 2 }, { p:next("x") })
    assert.same({ "serve_next_queued_number", 3, 2 },
                { p:call("serve_next_queued_number", 3) })
    assert.same({ "queue_new_number", nil, 1 },
                { p:call("queue_new_number") })
    p:stop()
  end)
end)

describe("names", function()
  it("registers, finds, refuses a taken name, and forgets it", function()
    local a = assert(tand.start{ min_number = 1, max_number = 9,
                                 name = "deli" })
    local b, err, detail = tand.start{ min_number = 1, max_number = 9,
                                       name = "deli" }
    assert.is_nil(b); assert.equal("name_taken", err)
    assert.matches("deli", detail)
    assert.equal(1, tand.whereis("deli"):queue_new_number())
    a:stop()
    local w, werr = tand.whereis("deli")
    assert.is_nil(w); assert.equal("noproc", werr)
    b = assert(tand.start{ min_number = 1, max_number = 9, name = "deli" })
    b:stop()
    assert.has_error(function() tand.whereis(42 and {}) end)
  end)
end)

describe("values", function()
  local c
  before_each(function() c = assert(tand.start(0)) end)
  after_each(function() c:stop() end)

  local function roundtrip(v)
    c:next(v)
    return select(2, c:report())
  end

  it("carry nil, booleans, integers, floats, strings and tables", function()
    for _, v in ipairs({ true, false, 0, -1, math.maxinteger,
                         math.mininteger, 1.5, -0.25, math.huge, "",
                         "caf\xc3\xa9\0bytes" }) do
      assert.equal(v, roundtrip(v))
    end
    assert.equal(math.type(1.0), math.type(roundtrip(1.0)))
    local t = { 1, 2, { a = "b", [10] = false, [2.5] = "f" }, {} }
    assert.same(t, roundtrip(t))
  end)

  it("carry a table met twice without a cycle", function()
    local shared = { 1 }
    assert.same({ shared, shared }, roundtrip({ shared, shared }))
  end)

  it("refuse functions, coroutines, userdata and cycles, naming them", function()
    local cyc = {}; cyc.self = cyc
    local deep = {}
    local d = deep
    for _ = 1, 100 do d[1] = {}; d = d[1] end
    local cases = {
      { function() end, "function" },
      { coroutine.create(function() end), "coroutine" },
      { io.stdout, "userdata" },
      { { f = print }, "key 'f'" },
      { { 1, 2, print }, "index 3" },
      { cyc, "cyclic" },
      { deep, "deep" },
    }
    for _, case in ipairs(cases) do
      local ok, msg = pcall(c.next, c, case[1])
      assert.is_false(ok)
      assert.matches(case[2], msg, 1, true)
    end
    -- nothing was sent: the state is as it was
    assert.same({ 0, nil }, { c:report() })
    assert.has_error(function() c:call("next", function() end) end)
  end)

  it("carry handles, which work on the other side", function()
    local m = assert(tand.start{ min_number = 1, max_number = 9 })
    local h = roundtrip(m)
    assert.equal(m, h)
    assert.equal(1, h:queue_new_number())
    m:stop()
    assert.equal("noproc", select(2, h:queue_new_number()))
    -- a handle to a server that ended before it arrived
    local dead = assert(tand.start{ min_number = 1, max_number = 9 })
    c:next(dead)
    dead:stop()
    local ghost = select(2, c:report())
    assert.is_false(ghost:alive())
    assert.equal("noproc", select(2, ghost:queue_new_number()))
  end)
end)

describe("a __gc finalizer that calls a server", function()
  -- Lua runs finalizers while anything allocates, so these run in the
  -- middle of another call's encoding or decoding on the same state.
  local active
  local function litter(n, f)
    for i = 1, n do
      setmetatable({}, { __gc = function() if active then f(i) end end })
    end
  end

  before_each(function() active = true end)
  after_each(function()
    active = false
    collectgarbage() -- the litter left, finalized doing nothing
    collectgarbage("incremental", 200, 100) -- Lua's defaults
  end)

  it("leaves the reply being decoded whole", function()
    local big = assert(tand.start{ min_number = 1, max_number = 10000000 })
    for _ = 1, 20000 do big:queue_new_number() end
    local small = assert(tand.start{ min_number = 1, max_number = 10 })
    small:queue_new_number()
    collectgarbage("incremental", 100, 400) -- collect often
    local finalized, during = 0, 0
    for _ = 1, 3 do
      collectgarbage()
      litter(2000, function()
        finalized = finalized + 1
        assert(#small:report_state().queue == 1) -- a reply with data
      end)
      local before = finalized
      local q = big:report_state().queue
      during = during + finalized - before
      assert.equal(20000, #q)
      for i = 1, #q do if q[i] ~= i then assert.equal(i, q[i]) end end
    end
    assert.is_true(during > 0) -- some ran inside the call
    big:stop(); small:stop()
  end)

  it("leaves the request being encoded whole", function()
    local echo = assert(tand.start{ min_number = 1, max_number = 10,
      policy = function()
        return { handle_call = function(r)
          if r[1] == "x" then return true end
          -- (a boolean: decoding it allocates nothing, so a finalizer
          -- that runs inside the call runs inside its encoding)
          return r[1] == "echo" and #r[2] == 2000 and r[2][2000][2][1] == 2000
        end }
      end })
    local arg = {}
    for i = 1, 2000 do arg[i] = { i, { i } } end
    collectgarbage("incremental", 100, 400)
    local finalized, during = 0, 0
    for _ = 1, 3 do
      collectgarbage()
      litter(3000, function(i)
        finalized = finalized + 1
        assert(echo:call("x", { "finalizer", i }))
      end)
      local before = finalized
      local got, err, detail = echo:call("echo", arg)
      during = during + finalized - before
      assert.same({ true }, { got, err, detail })
    end
    assert.is_true(during > 0) -- some ran inside the call
    echo:stop()
  end)

  it("cannot take the scratch away from the methods", function()
    local m = assert(tand.start{ min_number = 1, max_number = 1000 })
    assert.equal(1, m:call("queue_new_number"))
    local reg = debug.getregistry()
    for k, v in pairs(reg) do -- the scratch: a userdata under a userdata
      if type(k) == "userdata" and type(v) == "userdata" then reg[k] = nil end
    end
    collectgarbage(); collectgarbage()
    local junk = {}
    for i = 1, 1000 do junk[i] = ("x"):rep(40) .. i end
    assert.equal(2, m:call("queue_new_number", junk))
    m:stop()
  end)
end)

describe("timeouts", function()
  it("a call waits at most the handle's timeout for a full mailbox", function()
    local m = assert(tand.start{ min_number = 1, max_number = 9,
                                 call_timeout = 0 })
    -- with timeout 0 a call still gets through to an idle machine
    -- eventually or times out at once; either way it never hangs
    local t0 = tand.now()
    local n, err = m:queue_new_number()
    assert.is_true(n == 1 or err == "timeout")
    assert.is_true(tand.now() - t0 < 2000)
    m:stop()
  end)
end)

describe("tand.spawn", function()
  it("runs a function on another thread with copies of its arguments", function()
    local t = tand.spawn(function(a, b) return a + b, { a, b } end, 2, 3)
    local sum, list = t:join(10000)
    assert.equal(5, sum)
    assert.same({ 2, 3 }, list)
    assert.is_true(t:done())
  end)

  it("passes handles that work on the other side", function()
    local m = assert(tand.start{ min_number = 1, max_number = 99 })
    local t = tand.spawn(function(h) return h:queue_new_number() end, m)
    assert.equal(1, t:join(10000))
    assert.same({ 1 }, m:report_state().queue)
    m:stop()
  end)

  it("gives require 'tand' and globals in the new state", function()
    local t = tand.spawn(function()
      local tand2 = require "tand"
      return tand2.version, type(string.format)
    end)
    local v, f = t:join(10000)
    assert.equal(tand.version, v); assert.equal("function", f)
  end)

  it("refuses functions that capture locals, and C functions", function()
    local x = 1
    local ok, msg = pcall(tand.spawn, function() return x end)
    assert.is_false(ok); assert.matches("'x'", msg)
    assert.has_error(function() tand.spawn(print) end)
    assert.has_error(function() tand.spawn(function() end, print) end)
  end)

  it("reports an error with its traceback", function()
    local t = tand.spawn(function() error("oops") end)
    local r, err, detail = t:join(10000)
    assert.is_nil(r); assert.equal("thread_failed", err)
    assert.matches("oops", detail); assert.matches("traceback", detail)
  end)

  it("join gives up at its timeout", function()
    local t = tand.spawn(function() require("tand").sleep(300) return 1 end)
    local r, err = t:join(10)
    assert.is_nil(r); assert.equal("timeout", err)
    assert.equal(1, t:join(10000))
  end)

  it("does not wait for a thread nobody joins", function()
    tand.spawn(function() require("tand").sleep(50) end)
    collectgarbage(); collectgarbage()
    assert.is_true(helper.wait_for(function() return true end, 10))
  end)
end)

describe("m:stop(reason)", function()
  -- a policy that records the reason its terminate gets, in a counter
  local function recorded()
    return assert(tand.start{ min_number = 1, max_number = 9,
      policy = function()
        return { terminate = function(reason)
          require("tand").whereis("stop_reason_log"):next(reason)
        end }
      end })
  end

  it("is normal for nil, normal and shutdown, abnormal for the rest",
     function()
    local log = assert(tand.start{ initial_number = 0,
                                   name = "stop_reason_log" })
    for _, case in ipairs({ { nil, "normal" }, { "normal", "normal" },
                            { "shutdown", "shutdown" },
                            { "maintenance", "maintenance" } }) do
      local m = recorded()
      assert.is_true(m:stop(case[1]))
      assert.equal(case[2], select(2, log:report()))
      assert.equal("noproc", select(2, m:queue_new_number()))
    end
    log:stop()
  end)

  it("answers the callers still waiting with stopped and the reason",
     function()
    local m = assert(tand.start{ min_number = 1, max_number = 9,
      policy = function()
        return { handle_call = function(r)
          require("tand").sleep(r[2]); return "slept"
        end }
      end })
    local busy = tand.spawn(function(h) return h:call("sleep", 300) end, m)
    local waiting = tand.spawn(function(h)
      require("tand").sleep(50)
      return h:call("sleep", 0)
    end, m)
    assert.is_true(helper.wait_for(function()
      return m:stats().mailbox_depth == 1
    end))
    assert.is_true(m:stop("maintenance"))
    assert.same({ "slept" }, { busy:join(5000) })
    assert.same({ nil, "stopped", "maintenance" }, { waiting:join(5000) })
  end)

  it("refuses a reason that is not a string", function()
    local m = assert(tand.start(0))
    assert.has_error(function() m:stop(42) end)
    assert.has_error(function() m:stop({}) end)
    assert.is_true(m:alive())
    m:stop()
  end)
end)

describe("tand.register and tand.unregister", function()
  it("name a running server, and drop the name", function()
    local m = assert(tand.start(3))
    assert.is_true(tand.register("reg_one", m))
    assert.equal(3, tand.whereis("reg_one"):next("x"))
    assert.is_true(tand.register("reg_one", m)) -- its own name again
    local v, err = tand.register("reg_two", m)  -- one name each
    assert.is_nil(v); assert.equal("invalid_argument", err)
    local other = assert(tand.start(0))
    v, err = tand.register("reg_one", other)
    assert.is_nil(v); assert.equal("name_taken", err)
    assert.is_true(tand.unregister("reg_one"))
    assert.is_nil(tand.whereis("reg_one"))
    v, err = tand.unregister("reg_one")
    assert.is_nil(v); assert.equal("noproc", err)
    assert.is_true(tand.register("reg_one", other))
    assert.is_true(m:alive())
    other:stop()
    assert.is_nil(tand.whereis("reg_one")) -- gone with its server
    v, err = tand.register("reg_three", other)
    assert.is_nil(v); assert.equal("noproc", err)
    m:stop()
  end)

  it("raise for a bad name or something that is not a machine", function()
    local m = assert(tand.start(0))
    for _, bad in ipairs({ "", ("x"):rep(256), "a\0b", 42 }) do
      assert.has_error(function() tand.register(bad, m) end)
      assert.has_error(function() tand.unregister(bad) end)
    end
    assert.has_error(function() tand.register("reg_x", {}) end)
    assert.has_error(function() tand.register("reg_x") end)
    m:stop()
  end)

  it("race: of many threads registering one name, exactly one wins",
     function()
    local ms, ts = {}, {}
    for i = 1, 8 do ms[i] = assert(tand.start(i)) end
    for i = 1, 8 do
      ts[i] = tand.spawn(function(h)
        local tand = require "tand"
        local ok, err = tand.register("reg_race", h)
        return ok or err
      end, ms[i])
    end
    local wins, taken = 0, 0
    for i = 1, 8 do
      local r = ts[i]:join(5000)
      if r == true then wins = wins + 1
      elseif r == "name_taken" then taken = taken + 1 end
    end
    assert.equal(1, wins); assert.equal(7, taken)
    for i = 1, 8 do ms[i]:stop() end
  end)

  it("race: a name given while its server ends never outlives it", function()
    for round = 1, 200 do
      local m = assert(tand.start(round))
      local stopper = tand.spawn(function(h) return h:stop() end, m)
      local ok, err = tand.register("reg_ending", m)
      assert.is_true(ok or err == "noproc", tostring(err))
      assert.is_true(stopper:join(5000))
      -- ended: the name, if it was given, went with the server
      assert.is_nil(tand.whereis("reg_ending"))
    end
    local live = assert(tand.start(0))
    assert.is_true(tand.register("reg_ending", live))
    live:stop()
  end)
end)
