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
    assert.equal(1, deli:stats().restarts)
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
