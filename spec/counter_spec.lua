-- The counter machine: the seed's session, replayed.
local tand = require "tand"

describe("the counter machine", function()
  it("replays the seed's session", function()
    local c = assert(tand.start{ initial_number = 100 })
    assert.same({ 100, nil }, { c:report() })
    assert.equal(100, c:next("user1"))
    assert.same({ 101, "user1" }, { c:report() })
    assert.equal(101, c:next("user2"))
    assert.same({ 102, "user2" }, { c:report() })
    c:stop()
  end)

  it("starts from a number too: tand.start(100)", function()
    local c = assert(tand.start(100))
    assert.equal(100, c:next("a"))
    assert.equal(101, (c:report()))
    c:stop()
  end)

  it("records any value that can travel as the caller", function()
    local c = assert(tand.start(0))
    c:next({ id = 7, tags = { "vip" } })
    local _, last = c:report()
    assert.same({ id = 7, tags = { "vip" } }, last)
    c:next()
    assert.same({ 2, nil }, { c:report() })
    c:stop()
  end)

  it("refuses a start value that is not an integer", function()
    local m, err = tand.start(1.5)
    assert.is_nil(m)
    assert.equal("invalid_configuration", err)
    -- neither a table nor a number: a wrong type, which raises
    for _, v in ipairs({ "100", true }) do
      assert.has_error(function() tand.start(v) end)
    end
    m, err = tand.start{ initial_number = 2.5 }
    assert.is_nil(m); assert.equal("invalid_configuration", err)
    m, err = tand.start{ initial_number = 1, auto_shutdown_timeout = 10 }
    assert.is_nil(m); assert.equal("invalid_configuration", err)
  end)

  it("answers the generic form too", function()
    local c = assert(tand.start(5))
    assert.equal(5, c:call("next", "x"))
    assert.same({ 6, "x" }, { c:call("report") })
    c:stop()
  end)
end)
