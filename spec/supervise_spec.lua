-- tand.supervise: restarts by name, the strategies, the intensity.
local tand = require "tand"
local helper = require "spec.helper"

-- A policy that crashes on request, to make children fail.
local function crashable()
  return { handle_call = function(r, from, state, machine)
    if r[1] == "crash" then error("crash on request") end
    return machine:default(r)
  end }
end

local function child(name, extra)
  local c = { name = name, min_number = 1, max_number = 99,
              policy = crashable }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

local function id(name)
  local m = tand.whereis(name)
  return m and tostring(m):match("machine: (%d+)")
end

-- Polls until `name` is registered to a server other than `old`.
local function replaced(name, old)
  return helper.wait_for(function()
    local now = id(name)
    return now ~= nil and now ~= old
  end)
end

local function crash(name)
  return tand.whereis(name):call("crash")
end

describe("tand.supervise", function()
  it("restarts a crashed child, reachable through the same handle", function()
    local sup = assert(tand.supervise({ strategy = "one_for_one" },
                                      { child("deli") }))
    local deli = tand.whereis("deli")
    assert.equal(1, deli:queue_new_number())
    local v, err = deli:call("crash")
    assert.is_nil(v); assert.equal("server_crashed", err)
    assert.is_true(helper.wait_for(function() return deli:alive() end))
    -- a new incarnation, started from init: its queue is empty again
    assert.equal(1, deli:queue_new_number())
    -- (counted once the restart returns, a moment after the name is back)
    assert.is_true(helper.wait_for(function()
      return deli:stats().restarts == 1
    end))
    sup:stop()
    assert.is_false(deli:alive())
    assert.is_nil(tand.whereis("deli"))
  end)

  it("one_for_one restarts only the crashed child", function()
    local sup = assert(tand.supervise({ strategy = "one_for_one" },
                         { child("a"), child("b"), child("c") }))
    local a, b, c = id("a"), id("b"), id("c")
    crash("b")
    assert.is_true(replaced("b", b))
    assert.equal(a, id("a")); assert.equal(c, id("c"))
    sup:stop()
  end)

  it("one_for_all restarts every child", function()
    local sup = assert(tand.supervise({ strategy = "one_for_all" },
                         { child("a"), child("b"), child("c") }))
    local a, b, c = id("a"), id("b"), id("c")
    crash("b")
    assert.is_true(replaced("a", a))
    assert.is_true(replaced("b", b))
    assert.is_true(replaced("c", c))
    sup:stop()
  end)

  it("rest_for_one restarts the crashed child and those after it", function()
    local sup = assert(tand.supervise({ strategy = "rest_for_one" },
                         { child("a"), child("b"), child("c") }))
    local a, b, c = id("a"), id("b"), id("c")
    crash("b")
    assert.is_true(replaced("b", b))
    assert.is_true(replaced("c", c))
    assert.equal(a, id("a"))
    sup:stop()
  end)

  it("gives up past max_restarts within max_seconds #intensity", function()
    local sup = assert(tand.supervise({ max_restarts = 2, max_seconds = 60 },
                         { child("a"), child("b") }))
    for _ = 1, 2 do
      local before = id("a")
      crash("a")
      assert.is_true(replaced("a", before))
    end
    assert.is_true(sup:alive())
    crash("a")
    assert.is_true(helper.wait_for(function() return not sup:alive() end))
    assert.is_true(helper.wait_for(function()
      return tand.whereis("a") == nil and tand.whereis("b") == nil
    end))
  end)

  it("honours restart = transient and temporary", function()
    local sup = assert(tand.supervise({}, {
      child("t", { restart = "transient" }),
      child("p", { restart = "temporary" }) }))
    tand.whereis("t"):stop()            -- normal: not restarted
    crash("p")                          -- temporary: not restarted
    assert.is_true(helper.wait_for(function()
      return tand.whereis("t") == nil and tand.whereis("p") == nil
    end))
    assert.is_true(sup:alive())
    sup:stop()
  end)

  it("restarts a transient child stopped for a reason, not a normal one",
     function()
    local sup = assert(tand.supervise({}, {
      child("tr", { restart = "transient" }) }))
    local before = id("tr")
    assert.is_true(tand.whereis("tr"):stop("maintenance")) -- abnormal
    assert.is_true(replaced("tr", before))
    assert.is_true(tand.whereis("tr"):stop("shutdown"))     -- normal
    assert.is_true(helper.wait_for(function()
      return tand.whereis("tr") == nil
    end))
    sup:stop()
    sup = assert(tand.supervise({}, { child("tr", { restart = "transient" }) }))
    assert.is_true(tand.whereis("tr"):stop("normal"))
    assert.is_true(helper.wait_for(function()
      return tand.whereis("tr") == nil
    end))
    sup:stop()
  end)

  it("supervises built-in machines too", function()
    local sup = assert(tand.supervise({}, {
      { name = "plain", min_number = 1, max_number = 9 },
      { name = "count", initial_number = 5 } }))
    assert.equal(5, tand.whereis("count"):next("x"))
    local before = id("plain")
    tand.whereis("plain"):stop() -- permanent: restarted even after a stop
    assert.is_true(replaced("plain", before))
    sup:stop()
  end)

  it("refuses bad flags and children, starting nothing", function()
    local cases = {
      { { strategy = "one_for_none" }, { child("x") } },
      { { max_restarts = -1 }, { child("x") } },
      { { max_seconds = 0 }, { child("x") } },
      { { bogus = 1 }, { child("x") } },
      { {}, { { min_number = 1, max_number = 9 } } },           -- no name
      { {}, { child("x", { restart = "sometimes" }) } },
      { {}, { child("x", { min_number = 9, max_number = 1 }) } },
      { {}, { child("x"), "not a table" } },
    }
    for i, case in ipairs(cases) do
      local sup, err, detail = tand.supervise(case[1], case[2])
      assert.is_nil(sup, "case " .. i)
      assert.equal("invalid_configuration", err, "case " .. i)
      assert.is_string(detail)
      assert.is_nil(tand.whereis("x"))
    end
  end)

  it("reports a child that cannot start, and stops the others", function()
    local sup, err, detail = tand.supervise({}, {
      child("first"),
      { name = "broken", policy = "spec/fixtures/bad_syntax.lua" } })
    assert.is_nil(sup)
    assert.equal("invalid_configuration", err)
    assert.matches("broken", detail)
    assert.matches("bad_syntax.lua:%d+", detail)
    assert.is_nil(tand.whereis("first"))
  end)
end)

-- The dynamic operations, with OTP's meanings.
describe("a supervisor handle", function()
  local function names(sup)
    local out = {}
    for i, c in ipairs(assert(sup:which_children())) do out[i] = c.name end
    return table.concat(out, ",")
  end

  local function entry(sup, name)
    for _, c in ipairs(assert(sup:which_children())) do
      if c.name == name then return c end
    end
  end

  it("lists its children in start order, and start_child appends one",
     function()
    local sup = assert(tand.supervise({}, { child("s1"), child("s2") }))
    assert.equal("s1,s2", names(sup))
    local d = assert(sup:start_child(child("d1", { restart = "transient" })))
    assert.equal(1, d:queue_new_number())
    assert.equal(id("d1"), tostring(d):match("machine: (%d+)"))
    assert.equal("s1,s2,d1", names(sup))
    assert.same({ name = "d1", alive = true, restarts = 0,
                  restart = "transient" }, entry(sup, "d1"))
    assert.equal("permanent", entry(sup, "s1").restart)
    -- a crash of the dynamic child is restarted and counted
    local before = id("d1")
    crash("d1")
    assert.is_true(replaced("d1", before))
    assert.is_true(helper.wait_for(function()
      return entry(sup, "d1").restarts == 1
    end))
    sup:stop()
    assert.is_nil(tand.whereis("d1"))
  end)

  it("refuses a name it has: already_started, then already_present",
     function()
    local sup = assert(tand.supervise({}, {}))
    assert(sup:start_child(child("n1")))
    local v, err = sup:start_child(child("n1"))
    assert.is_nil(v); assert.equal("already_started", err)
    assert.is_true(sup:terminate_child("n1"))
    v, err = sup:start_child(child("n1"))
    assert.is_nil(v); assert.equal("already_present", err)
    assert.equal("n1", names(sup))
    sup:stop()
  end)

  it("terminates a child for good, and restarts it by hand", function()
    local sup = assert(tand.supervise({}, { child("tr") }))
    local old = tand.whereis("tr")
    assert.is_true(sup:terminate_child("tr"))
    assert.is_false(old:alive())
    assert.is_nil(tand.whereis("tr"))
    -- permanent, yet not restarted: terminated with "shutdown"; the spec
    -- is kept, not running (which_children is handled after the DOWN)
    assert.same({ name = "tr", alive = false, restarts = 0,
                  restart = "permanent" }, entry(sup, "tr"))
    assert.is_nil(tand.whereis("tr"))
    assert.is_true(sup:terminate_child("tr"))   -- not running: fine
    local new = assert(sup:restart_child("tr"))
    assert.is_true(new:alive())
    assert.equal(id("tr"), tostring(new):match("machine: (%d+)"))
    assert.equal(0, entry(sup, "tr").restarts)  -- by hand: not counted
    local v, err = sup:restart_child("tr")
    assert.is_nil(v); assert.equal("running", err)
    sup:stop()
  end)

  it("deletes only a child that is not running", function()
    local sup = assert(tand.supervise({}, { child("del"), child("other") }))
    local v, err = sup:delete_child("del")
    assert.is_nil(v); assert.equal("running", err)
    assert.is_true(sup:terminate_child("del"))
    assert.is_true(sup:delete_child("del"))
    assert.equal("other", names(sup))
    v, err = sup:delete_child("del")
    assert.is_nil(v); assert.equal("not_found", err)
    v, err = sup:terminate_child("del")
    assert.is_nil(v); assert.equal("not_found", err)
    v, err = sup:restart_child("del")
    assert.is_nil(v); assert.equal("not_found", err)
    -- the name is free for a new child
    assert(sup:start_child(child("del")))
    assert.equal("other,del", names(sup))
    sup:stop()
  end)

  it("drops a temporary child's spec when it ends, and keeps a transient "
     .. "one that ends normally", function()
    local sup = assert(tand.supervise({}, {}))
    assert(sup:start_child(child("tmp", { restart = "temporary" })))
    local tran = assert(sup:start_child(child("tran",
                                              { restart = "transient" })))
    assert.equal("tmp,tran", names(sup))
    crash("tmp")
    assert.is_true(helper.wait_for(function()
      return names(sup) == "tran"
    end))
    assert.is_true(tran:stop())                 -- a normal end
    assert.is_true(helper.wait_for(function()
      return entry(sup, "tran").alive == false
    end))
    assert.equal("tran", names(sup))            -- kept
    assert.is_nil(tand.whereis("tran"))
    assert(sup:restart_child("tran"))
    assert.is_true(entry(sup, "tran").alive)
    -- terminate_child of a temporary child deletes its spec too
    assert(sup:start_child(child("tmp2", { restart = "temporary" })))
    assert.is_true(sup:terminate_child("tmp2"))
    assert.equal("tran", names(sup))
    sup:stop()
  end)

  it("gives up when a dynamic child passes the intensity #intensity",
     function()
    local sup = assert(tand.supervise({ max_restarts = 2, max_seconds = 60 },
                                      {}))
    assert(sup:start_child(child("x")))
    assert(sup:start_child(child("y")))
    for _ = 1, 2 do
      local before = id("x")
      crash("x")
      assert.is_true(replaced("x", before))
    end
    -- by hand: no restart of the intensity
    assert.is_true(sup:terminate_child("x"))
    assert(sup:restart_child("x"))
    assert.is_true(sup:alive())
    crash("x")
    assert.is_true(helper.wait_for(function() return not sup:alive() end))
    assert.is_true(helper.wait_for(function()
      return tand.whereis("x") == nil and tand.whereis("y") == nil
    end))
    local v, err = sup:which_children()
    assert.is_nil(v); assert.equal("noproc", err)
  end)

  it("applies rest_for_one to the children as they are now", function()
    local sup = assert(tand.supervise({ strategy = "rest_for_one" },
                                      { child("a") }))
    assert(sup:start_child(child("b")))
    assert(sup:start_child(child("c")))
    local a, b, c = id("a"), id("b"), id("c")
    crash("b")
    assert.is_true(replaced("b", b))
    assert.is_true(replaced("c", c))
    assert.equal(a, id("a"))
    sup:stop()
  end)

  it("refuses a bad spec, keeping nothing", function()
    local sup = assert(tand.supervise({}, {}))
    local cases = {
      { min_number = 1, max_number = 9 },                 -- no name
      child("bad", { restart = "sometimes" }),
      child("bad", { min_number = 9, max_number = 1 }),
      child("bad", { bogus = true }),
      { name = "bad", policy = "spec/fixtures/bad_syntax.lua" },
    }
    for i, spec in ipairs(cases) do
      local v, err, detail = sup:start_child(spec)
      assert.is_nil(v, "case " .. i)
      assert.equal("invalid_configuration", err, "case " .. i)
      assert.is_string(detail)
    end
    local _, _, detail = sup:start_child(cases[5])
    assert.matches("bad_syntax.lua:%d+", detail)   -- the start's own detail
    assert.is_nil(tand.whereis("bad"))
    assert.same({ specs = 0, active = 0, supervisors = 0, workers = 0 },
                sup:count_children())
    assert.has_error(function() sup:start_child("bad") end)
    assert.has_error(function() sup:terminate_child(42) end)
    assert.has_error(function() sup:delete_child("") end)
    sup:stop()
  end)

  it("refuses a name another server has (name_taken)", function()
    local other = assert(tand.start{ name = "taken", initial_number = 1 })
    local sup = assert(tand.supervise({}, {}))
    local v, err, detail = sup:start_child(child("taken"))
    assert.is_nil(v); assert.equal("name_taken", err)
    assert.matches("taken", detail)
    assert.equal(0, #sup:which_children())
    assert.is_true(other:alive())
    sup:stop(); other:stop()
  end)

  it("works through tand.whereis(supname)", function()
    local sup = assert(tand.supervise({ name = "the_sup" }, { child("w1") }))
    local h = tand.whereis("the_sup")
    assert(h:start_child(child("w2")))
    assert.equal("w1,w2", names(h))
    assert.same({ specs = 2, active = 2, supervisors = 0, workers = 2 },
                h:count_children())
    assert.is_true(h:terminate_child("w2"))
    assert.same({ specs = 2, active = 1, supervisors = 0, workers = 2 },
                h:count_children())
    assert.is_true(h:delete_child("w2"))
    assert.equal(1, h:count_children().specs)
    sup:stop()
  end)

  it("raises on a server that is not a supervisor", function()
    local m = assert(tand.start{ min_number = 1, max_number = 9 })
    for _, method in ipairs{ "which_children", "count_children" } do
      local ok, msg = pcall(m[method], m)
      assert.is_false(ok)
      assert.matches("not a supervisor", msg)
    end
    assert.has_error(function() m:terminate_child("x") end)
    assert.has_error(function() m:start_child(child("x")) end)
    assert.is_nil(tand.whereis("x"))
    m:stop()
  end)

  it("times out with the handle's timeout", function()
    local sup = assert(tand.supervise({}, {}))
    sup:settimeout(0)
    local ok = 0
    for i = 1, 50 do
      local v, err = sup:start_child(child("t" .. i))
      if v then ok = ok + 1 else assert.equal("timeout", err) end
    end
    sup:settimeout(5000)
    assert.is_true(#sup:which_children() >= ok)
    sup:stop()
  end)
end)
