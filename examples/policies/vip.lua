-- examples/policies/vip.lua - VIP customers first.
--
-- Regular customers take numbers as usual. A VIP takes a number with
-- m:call("queue_vip") and is served before every regular customer, in the
-- order the VIPs came; the queue itself stays the machine's.
return function()
  local P = {}

  -- for `tand check`: queue_vip hands out a new number
  P.ops = { queue_vip = { kind = "queue" } }
  -- what VIPs do not change goes straight to the machine, without Lua
  P.passthrough = { "queue_new_number", "report_state" }

  function P.init(opts, machine)
    return { vips = {} } -- numbers held by VIPs, in arrival order
  end

  function P.handle_call(request, from, state, machine)
    local op = request[1]
    if op == "queue_vip" then
      local n, err, detail = machine:queue_new_number()
      if n then state.vips[#state.vips + 1] = n end
      return n, err, detail
    elseif op == "serve_next_queued_number" and request[2] == nil
           and #state.vips > 0 then
      return machine:serve_next_queued_number(table.remove(state.vips, 1))
    elseif op == "reset_state" then
      state.vips = {}
    end
    return machine:default(request) -- everything else: built-in behaviour
  end

  function P.handle_cast(request, state, machine)
    if request[1] == "reset_state" then state.vips = {} end
    machine:default(request)
  end

  return P
end
