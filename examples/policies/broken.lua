-- examples/policies/broken.lua - a fast-pass policy with a planted bug,
-- kept broken on purpose: `tand check examples/policies/broken.lua`
-- finds the bug and shrinks it to a few steps.
--
-- m:call("fast_pass") takes a number that is served before the others,
-- like vip.lua. The bug: reset_state arrives as a cast, and this policy
-- forgets its fast passes only in handle_call, so after m:reset_state()
-- it still serves a fast-pass number the reset already removed (compare
-- handle_cast in vip.lua, which gets this right).
return function()
  local P = {}

  -- for `tand check`: fast_pass hands out a new number
  P.ops = { fast_pass = { kind = "queue" } }

  function P.init()
    return { passes = {} }
  end

  function P.handle_call(request, from, state, machine)
    local op = request[1]
    if op == "fast_pass" then
      local n, err, detail = machine:queue_new_number()
      if n then state.passes[#state.passes + 1] = n end
      return n, err, detail
    elseif op == "serve_next_queued_number" and request[2] == nil
           and #state.passes > 0 then
      local n = table.remove(state.passes, 1)
      machine:serve_next_queued_number(n) -- its result is not checked
      return n
    elseif op == "reset_state" then
      state.passes = {}
    end
    return machine:default(request)
  end

  return P
end
