-- The deluxe machine: every rule of DESIGN.md, "The built-in machines".
local tand = require "tand"

describe("the deluxe machine", function()
  local m
  before_each(function()
    m = assert(tand.start{ min_number = 1, max_number = 5 })
  end)
  after_each(function()
    m:stop()
  end)

  it("starts with an empty queue and reports its whole state", function()
    assert.same({ min_number = 1, max_number = 5, queue = {},
                  auto_shutdown_timeout = math.huge }, m:report_state())
  end)

  it("issues min_number first, then h + 1 after the highest queued", function()
    assert.equal(1, m:queue_new_number())
    assert.equal(2, m:queue_new_number())
    assert.equal(3, m:queue_new_number())
    assert.same({ 1, 2, 3 }, m:report_state().queue)
  end)

  it("restarts at min_number when the queue is empty", function()
    m:queue_new_number(); m:queue_new_number()
    m:serve_next_queued_number(); m:serve_next_queued_number()
    assert.equal(1, m:queue_new_number())
  end)

  it("goes on after the highest, even below a served front", function()
    m:queue_new_number(); m:queue_new_number(); m:queue_new_number()
    assert.equal(1, m:serve_next_queued_number())
    assert.equal(4, m:queue_new_number())
  end)

  it("wraps to the smallest free number once max_number is queued", function()
    for _ = 1, 5 do m:queue_new_number() end
    assert.equal(2, m:serve_next_queued_number(2))
    assert.equal(4, m:serve_next_queued_number(4))
    assert.equal(2, m:queue_new_number())
    assert.equal(4, m:queue_new_number())
    assert.same({ 1, 3, 5, 2, 4 }, m:report_state().queue)
  end)

  it("fails with all_possible_numbers_are_in_use when full", function()
    for i = 1, 5 do assert.equal(i, m:queue_new_number()) end
    local n, err, detail = m:queue_new_number()
    assert.is_nil(n)
    assert.equal("all_possible_numbers_are_in_use", err)
    assert.is_string(detail)
    assert.same({ 1, 2, 3, 4, 5 }, m:report_state().queue)
  end)

  it("serves the front in FIFO order", function()
    m:queue_new_number(); m:queue_new_number(); m:queue_new_number()
    assert.equal(1, m:serve_next_queued_number())
    assert.equal(2, m:serve_next_queued_number())
    assert.same({ 3 }, m:report_state().queue)
  end)

  it("serves a queued priority number and keeps the others' order", function()
    for _ = 1, 4 do m:queue_new_number() end
    assert.equal(3, m:serve_next_queued_number(3))
    assert.same({ 1, 2, 4 }, m:report_state().queue)
    assert.equal(1, m:serve_next_queued_number())
  end)

  it("fails with priority_number_not_found and changes nothing", function()
    m:queue_new_number(); m:queue_new_number()
    local before = m:report_state()
    local n, err = m:serve_next_queued_number(9)
    assert.is_nil(n)
    assert.equal("priority_number_not_found", err)
    assert.same(before, m:report_state())
  end)

  it("fails with empty_queue, even with a priority number", function()
    local n, err = m:serve_next_queued_number()
    assert.is_nil(n); assert.equal("empty_queue", err)
    n, err = m:serve_next_queued_number(3)
    assert.is_nil(n); assert.equal("empty_queue", err)
    assert.same({}, m:report_state().queue)
  end)

  it("resets as a cast: the queue empties, bounds and timeout stay", function()
    m:queue_new_number(); m:queue_new_number()
    assert.is_true(m:reset_state())
    local s = m:report_state() -- ordered after the reset
    assert.same({}, s.queue)
    assert.equal(1, s.min_number); assert.equal(5, s.max_number)
    assert.equal(math.huge, s.auto_shutdown_timeout)
    assert.equal(1, m:queue_new_number())
  end)

  it("ignores unexpected messages", function()
    m:queue_new_number()
    assert.is_true(m:send("hello", { 1, 2 }))
    assert.is_true(m:send())
    assert.same({ 1 }, m:report_state().queue)
  end)

  it("answers the generic form m:call(op, ...) the same way", function()
    assert.equal(1, m:call("queue_new_number"))
    assert.equal(2, m:call("queue_new_number"))
    assert.equal(2, m:call("serve_next_queued_number", 2))
    assert.same({ 1 }, m:call("report_state").queue)
    local n, err = m:call("serve_next_queued_number", 7)
    assert.is_nil(n); assert.equal("priority_number_not_found", err)
    n, err = m:call("no_such_op")
    assert.is_nil(n); assert.equal("unknown_request", err)
    assert.is_true(m:cast("reset_state"))
    assert.same({}, m:report_state().queue)
  end)

  it("raises for a priority that is not an integer", function()
    assert.has_error(function() m:serve_next_queued_number("x") end)
    assert.has_error(function() m:serve_next_queued_number(1.5) end)
  end)
end)

describe("deluxe bounds", function()
  it("accepts negative bounds", function()
    local m = assert(tand.start{ min_number = -3, max_number = -1 })
    assert.equal(-3, m:queue_new_number())
    assert.equal(-2, m:queue_new_number())
    assert.equal(-1, m:queue_new_number())
    assert.equal("all_possible_numbers_are_in_use",
                 select(2, m:queue_new_number()))
    m:stop()
  end)

  it("handles a range of tens of millions without allocating it", function()
    local m = assert(tand.start{ min_number = 0, max_number = 50000000 })
    for i = 0, 999 do assert.equal(i, m:queue_new_number()) end
    assert.equal(500, m:serve_next_queued_number(500))
    m:stop()
  end)

  it("refuses invalid configurations with invalid_configuration", function()
    local bad = {
      { min_number = 5, max_number = 5 },
      { min_number = 6, max_number = 5 },
      { min_number = 1 },
      { max_number = 9 },
      { min_number = 1.5, max_number = 9 },
      { min_number = "1", max_number = 9 },
      { min_number = 1, max_number = 9, auto_shutdown_timeout = -1 },
      { min_number = 1, max_number = 9, auto_shutdown_timeout = 2.5 },
      { min_number = 1, max_number = 9, auto_shutdown_timeout = "x" },
      { min_number = 1, max_number = 9, initial_number = 3 },
      { min_number = 1, max_number = 9, bogus = true },
      { min_number = 1, max_number = 9, [1] = true },
      { min_number = 1, max_number = 9, name = "" },
      { min_number = 1, max_number = 9, name = 7 },
      { min_number = 1, max_number = 9, mailbox = 0 },
      { min_number = 1, max_number = 9, call_timeout = -5 },
      {},
    }
    for i, opts in ipairs(bad) do
      local m, err, detail = tand.start(opts)
      assert.is_nil(m, "case " .. i)
      assert.equal("invalid_configuration", err, "case " .. i)
      assert.is_string(detail)
    end
  end)

  it("names the unknown option in the detail", function()
    local _, _, detail = tand.start{ min_number = 1, max_number = 9,
                                     max_numbr = 10 }
    assert.matches("max_numbr", detail)
  end)
end)
