-- examples/policies/members_first.lua - members first, checked elsewhere.
--
-- m:call("join", customer) takes a number; a member is served before
-- everyone else. Whether a customer is a member is another server's to
-- say: the one registered as "members", asked with
-- m:call("is_member", customer) (true or false), and it may be slow. The
-- policy asks it with machine:send_request and defers the caller's reply
-- (tand.noreply); the answer comes back as the info {"reply", id, ...}
-- and only then does the customer get a number. Meanwhile this server
-- goes on with its other callers: a slow check holds up nobody else. If
-- the check fails (no such server, its error, its deadline), the customer
-- joins as a regular.
return function()
  local tand = require "tand"
  local P = {}

  P.ops = { join = { kind = "queue", args = { "string" } } }
  P.passthrough = { "queue_new_number", "report_state" }

  function P.init()
    return {
      members = {}, -- numbers held by members, in arrival order
      asked = {},   -- request id -> the `from` of the customer who joins
    }
  end

  -- The customer behind request id gets a number, a member's or not.
  local function admit(state, machine, id, is_member)
    local from = state.asked[id]
    state.asked[id] = nil
    local n, err, detail = machine:queue_new_number()
    if not n then return machine:reply(from, nil, err, detail) end
    if is_member then state.members[#state.members + 1] = n end
    machine:reply(from, n, is_member and "member" or "regular")
  end

  function P.handle_call(request, from, state, machine)
    local op = request[1]
    if op == "join" then
      local members = tand.whereis("members")
      local id = members and machine:send_request(members, "is_member",
                                                  request[2])
      if not id then -- nobody to ask, or it cannot take the question now
        local n, err, detail = machine:queue_new_number()
        if not n then return nil, err, detail end
        return n, "regular"
      end
      state.asked[id] = from
      return tand.noreply
    elseif op == "serve_next_queued_number" and request[2] == nil
           and #state.members > 0 then
      return machine:serve_next_queued_number(table.remove(state.members, 1))
    elseif op == "reset_state" then
      state.members = {}
    end
    return machine:default(request)
  end

  function P.handle_info(msg, state, machine)
    if msg[1] == "reply" and state.asked[msg[2]] then
      admit(state, machine, msg[2], msg[3] == true)
    end
  end

  function P.handle_cast(request, state, machine)
    if request[1] == "reset_state" then state.members = {} end
    machine:default(request)
  end

  return P
end
