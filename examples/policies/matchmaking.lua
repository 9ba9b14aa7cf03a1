-- examples/policies/matchmaking.lua - a game's matchmaking queue.
--
-- m:call("join", player, rating) waits until an opponent within
-- max_gap rating points (100; m:call("set_gap", n) changes it) joins: the
-- reply is deferred, then both callers get the match: the opponent's name
-- and rating. A player whose call timed out has left the lobby: the
-- machine:reply to them fails and the search goes on. m:call("waiting")
-- counts the players still waiting.
return function()
  local tand = require "tand"
  local P = {}

  -- for `tand check`: join is known but not called (its caller waits
  -- for an opponent)
  P.ops = { join = { skip = true }, set_gap = { args = { "int" } },
            waiting = {} }

  function P.init(opts)
    return { lobby = {}, max_gap = 100 }
  end

  -- The waiting player closest in rating, within max_gap (oldest on ties).
  local function closest(state, rating)
    local best, best_gap
    for i, p in ipairs(state.lobby) do
      local gap = math.abs(p.rating - rating)
      if gap <= state.max_gap and (best == nil or gap < best_gap) then
        best, best_gap = i, gap
      end
    end
    return best
  end

  function P.handle_call(request, from, state, machine)
    local op = request[1]
    if op == "join" then
      local player, rating = request[2], request[3]
      if type(player) ~= "string" or math.type(rating) == nil then
        return nil, "unknown_request", "join needs a name and a rating"
      end
      local best = closest(state, rating)
      while best do
        local other = table.remove(state.lobby, best)
        if machine:reply(other.from, player, rating) then
          return other.player, other.rating
        end
        best = closest(state, rating) -- they had left: look again
      end
      state.lobby[#state.lobby + 1] = { player = player, rating = rating,
                                        from = from }
      return tand.noreply
    elseif op == "set_gap" then
      if math.type(request[2]) ~= "integer" or request[2] < 0 then
        return nil, "unknown_request", "set_gap needs an integer >= 0"
      end
      state.max_gap = request[2]
      return true
    elseif op == "waiting" then
      return #state.lobby
    end
    return machine:default(request)
  end

  return P
end
