-- examples/policies/desks.lua - service desks with ticket categories.
--
-- Customers take tickets per category: m:call("take", "A") gives "A001",
-- then "A002"; m:call("take", "B") gives "B001". A desk serves the
-- longest-waiting ticket among the categories it handles:
-- m:call("serve", {"A", "C"}). m:call("waiting") lists what is queued.
return function()
  local P = {}

  -- for `tand check`: the ops and their arguments' generators
  P.ops = { take = { args = { "string" } }, serve = { args = { "string" } },
            waiting = {} }

  function P.init()
    -- per category: the next serial and a FIFO of {ticket, arrival}
    return { serial = {}, queues = {}, arrivals = 0 }
  end

  function P.handle_call(request, from, state, machine)
    local op, arg = request[1], request[2]
    if op == "take" then
      if type(arg) ~= "string" or not arg:match("^%u$") then
        return nil, "unknown_request", "a category is one capital letter"
      end
      local serial = (state.serial[arg] or 0) + 1
      if serial > 999 then
        return nil, "all_possible_numbers_are_in_use", "category " .. arg
      end
      state.serial[arg] = serial
      state.arrivals = state.arrivals + 1
      local q = state.queues[arg] or {}
      state.queues[arg] = q
      local ticket = ("%s%03d"):format(arg, serial)
      q[#q + 1] = { ticket, state.arrivals }
      return ticket
    elseif op == "serve" then
      local best
      for _, cat in ipairs(type(arg) == "table" and arg or {}) do
        local q = state.queues[cat]
        if q and q[1] and (best == nil or q[1][2] < best[1][2]) then
          best = q
        end
      end
      if not best then return nil, "empty_queue" end
      return table.remove(best, 1)[1]
    elseif op == "waiting" then
      local all = {}
      for cat, q in pairs(state.queues) do
        for _, t in ipairs(q) do all[#all + 1] = t end
      end
      table.sort(all, function(a, b) return a[2] < b[2] end)
      for i, t in ipairs(all) do all[i] = t[1] end
      return all
    end
    return machine:default(request)
  end

  return P
end
