-- The example policies of examples/policies/: each does what it says.
local tand = require "tand"
local helper = require "spec.helper"

package.path = "./examples/?.lua;" .. package.path

local function start(name, extra)
  local opts = { min_number = 1, max_number = 99, policy = "policies." .. name }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(tand.start(opts))
end

describe("policies.vip", function()
  it("serves VIPs first, in their order, then everyone else", function()
    local m = start("vip")
    assert.equal(1, m:queue_new_number())
    assert.equal(2, m:call("queue_vip"))
    assert.equal(3, m:queue_new_number())
    assert.equal(4, m:call("queue_vip"))
    assert.equal(2, m:serve_next_queued_number())
    assert.equal(4, m:serve_next_queued_number())
    assert.equal(1, m:serve_next_queued_number())
    assert.equal(3, m:serve_next_queued_number())
    assert.equal("empty_queue", select(2, m:serve_next_queued_number()))
    m:stop()
  end)

  it("forgets its VIPs on reset", function()
    local m = start("vip")
    m:call("queue_vip"); m:queue_new_number()
    m:reset_state()
    m:queue_new_number(); m:queue_new_number()
    assert.equal(1, m:serve_next_queued_number())
    m:stop()
  end)
end)

describe("policies.one_per_caller", function()
  it("gives a caller who holds a number the same number back", function()
    local m = start("one_per_caller")
    assert.equal(1, m:call("take", "ann"))
    assert.equal(2, m:call("take", "bob"))
    assert.equal(1, m:call("take", "ann"))
    assert.same({ 1, 2 }, m:report_state().queue)
    assert.equal(1, m:serve_next_queued_number())
    assert.equal(3, m:call("take", "ann")) -- served: a new one
    assert.equal("unknown_request", select(2, m:call("take")))
    m:stop()
  end)
end)

describe("policies.desks", function()
  it("issues tickets per category and serves the longest waiting", function()
    local m = start("desks")
    assert.equal("A001", m:call("take", "A"))
    assert.equal("B001", m:call("take", "B"))
    assert.equal("A002", m:call("take", "A"))
    assert.equal("C001", m:call("take", "C"))
    assert.same({ "A001", "B001", "A002", "C001" }, m:call("waiting"))
    assert.equal("B001", m:call("serve", { "B", "C" }))
    assert.equal("A001", m:call("serve", { "A", "C" }))
    assert.equal("A002", m:call("serve", { "A", "C" }))
    assert.equal("C001", m:call("serve", { "A", "C" }))
    assert.equal("empty_queue", select(2, m:call("serve", { "A" })))
    assert.equal("unknown_request", select(2, m:call("take", "ab")))
    m:stop()
  end)
end)

describe("policies.my_turn", function()
  it("wakes each customer when their number is served", function()
    local m = start("my_turn")
    local waiters = {}
    for i = 1, 3 do
      local n = m:queue_new_number()
      waiters[i] = tand.spawn(function(h, mine)
        return h:call("wait", mine)
      end, m, n)
    end
    assert.is_true(helper.wait_for(function()
      return m:stats().calls >= 6
    end))
    for i = 1, 3 do
      assert.equal(i, m:serve_next_queued_number())
      assert.same({ "your turn", i }, { waiters[i]:join(10000) })
    end
    assert.equal("priority_number_not_found", select(2, m:call("wait", 42)))
    m:stop()
  end)
end)

describe("policies.matchmaking", function()
  it("pairs players whose ratings are close", function()
    local m = start("matchmaking")
    local function join(name, rating)
      return tand.spawn(function(h, n, r)
        return h:call("join", n, r)
      end, m, name, rating)
    end
    local ann = join("ann", 1500)
    local bob = join("bob", 2100) -- too far from ann
    assert.is_true(helper.wait_for(function()
      return m:call("waiting") == 2
    end))
    local cid = join("cid", 1550) -- close to ann
    assert.same({ "cid", 1550 }, { ann:join(10000) })
    assert.same({ "ann", 1500 }, { cid:join(10000) })
    assert.equal(1, m:call("waiting"))
    assert.is_true(m:call("set_gap", 1000))
    local dee = join("dee", 1400)
    assert.same({ "dee", 1400 }, { bob:join(10000) })
    assert.same({ "bob", 2100 }, { dee:join(10000) })
    m:stop()
  end)

  it("skips a player who left the lobby", function()
    local m = start("matchmaking")
    m:settimeout(50)
    assert.equal("timeout", select(2, m:call("join", "ghost", 1500)))
    m:settimeout(5000)
    local eve = tand.spawn(function(h) return h:call("join", "eve", 1510) end,
                           m)
    assert.is_true(helper.wait_for(function()
      return m:call("waiting") == 1
    end))
    assert.same({ "eve", 1510 }, { m:call("join", "fay", 1520) })
    assert.same({ "fay", 1520 }, { eve:join(10000) })
    m:stop()
  end)
end)

describe("policies.members_first", function()
  -- The "members" server: ann and cy are members.
  local function members()
    return assert(tand.start{
      min_number = 1, max_number = 99, name = "members",
      policy = function()
        return { handle_call = function(r)
          return r[2] == "ann" or r[2] == "cy"
        end }
      end })
  end

  local function join(m, who)
    return tand.spawn(function(h, name) return h:call("join", name) end,
                      m, who)
  end

  it("serves members first, checked by another server", function()
    local club = members()
    local m = start("members_first")
    assert.same({ 1, "regular" }, { m:call("join", "bob") })
    assert.same({ 2, "member" }, { m:call("join", "ann") })
    assert.same({ 3, "regular" }, { m:call("join", "dee") })
    assert.same({ 4, "member" }, { m:call("join", "cy") })
    for _, want in ipairs({ 2, 4, 1, 3 }) do
      assert.equal(want, m:serve_next_queued_number())
    end
    m:stop(); club:stop()
  end)

  it("goes on with its other callers while a check is slow", function()
    -- every check sleeps 400 ms in the members server
    local club = assert(tand.start{
      min_number = 1, max_number = 99, name = "members",
      policy = function()
        return { handle_call = function(r)
          require("tand").sleep(400)
          return r[2] == "ann"
        end }
      end })
    local m = start("members_first")
    local ann = join(m, "ann")
    assert.is_true(helper.wait_for(function()
      return club:stats().mailbox_depth == 0 and m:stats().deferred == 1
    end))
    local t0 = tand.now()
    for i = 1, 10 do assert.equal(i, m:queue_new_number()) end
    assert.is_true(tand.now() - t0 < 300) -- nobody waited for the check
    assert.same({ 11, "member" }, { ann:join(5000) })
    m:stop(); club:stop()
  end)

  it("lets a customer join as a regular when nobody can check", function()
    local m = start("members_first")
    assert.same({ 1, "regular" }, { m:call("join", "ann") }) -- no server
    local club = assert(tand.start{ -- one whose check crashes
      min_number = 1, max_number = 99, name = "members",
      policy = function()
        return { handle_call = function() error("no database") end }
      end })
    assert.same({ 2, "regular" }, { m:call("join", "ann") })
    assert.is_false(club:alive())
    m:stop()
  end)
end)
