-- lua/cli/check.lua - `tand check`: property-based checking of a policy.
-- Random operations (the machine's, and the policy's own) run first from
-- several threads at once, then from one thread with the invariants
-- checked after every step; a failing sequence is shrunk to a short
-- reproduction, printed with the seed that replays it.
local tand = require "tand"
local util = require "tand.cli.util"

local M = {}

M.usage = [[
usage: tand check POLICY [options]

Drives a policy (or "deluxe") with random operations, first from several
threads at once, then from one thread with the ticket invariants checked
after every step. A failure is shrunk to a short reproduction, printed
with the command that replays it. Exit code 1 when a bug is found.

options:
  --seed S                 the random seed (default: from the clock)
  --ops N                  operations per phase (default 1000)
  --threads T              threads of the concurrent phase, 1..64 (4)
  --op NAME[=KIND][:GEN,...]
                           an op of the policy (KIND: queue, serve or
                           other) and its arguments' generators (caller,
                           int, number, string, bool); repeatable
  --min N, --max M         the range (default 1..8)
  --callback-timeout MS    the policy's callback_timeout (default 2000)
  -h, --help               this text
]]

-- Replies that always mean the policy is wrong.
local BAD = { server_crashed = true, bad_value = true, noproc = true,
              timeout = true, out_of_memory = true, bad_message = true }

local CALLERS = { "ann", "bob", "cid", "dee" }

-- Argument generators, by name: what --op NAME:GEN,... and a policy's
-- `ops` declaration may use.
local GENERATORS = {
  caller = function() return CALLERS[math.random(#CALLERS)] end,
  int = function() return math.random(0, 9) end,
  number = function(ctx) return math.random(ctx.min, ctx.max) end,
  string = function() return ("x"):rep(math.random(0, 3)) end,
  bool = function() return math.random(2) == 1 end,
}

-- The machine's own operations: name, kind (what its reply means), args.
local BUILTIN = {
  { name = "queue_new_number", kind = "queue", args = {}, weight = 35 },
  { name = "serve_next_queued_number", kind = "serve", args = {},
    weight = 25 },
  { name = "serve_next_queued_number", kind = "serve", args = { "number" },
    weight = 10 },
  { name = "report_state", kind = "report", args = {}, weight = 5 },
  { name = "reset_state", kind = "reset", args = {}, weight = 5 },
}

local KINDS = { queue = true, serve = true, other = true }

-- Reads one op spec: NAME[=KIND][:GEN,...].
local function parse_op(spec, where)
  local name, kind, gens = spec:match("^([%a_][%w_]*)=?(%a*):?(.*)$")
  if name == nil then
    util.usage_error("%s: '%s' is not NAME[=KIND][:GEN,...]", where, spec)
  end
  kind = kind ~= "" and kind or "other"
  if not KINDS[kind] then
    util.usage_error("%s: kind '%s' of %s is not queue, serve or other",
                     where, kind, name)
  end
  local args = {}
  for g in gens:gmatch("[^,]+") do
    if not GENERATORS[g] then
      util.usage_error("%s: unknown generator '%s' (caller, int, number, "
                       .. "string, bool)", where, g)
    end
    args[#args + 1] = g
  end
  return { name = name, kind = kind, args = args, weight = 20 }
end

-- The policy's declared ops: P.ops = { name = { kind = "queue", args =
-- { "caller" } }, ... }, in name order, and the names of those declared
-- with skip = true (known, never called: an op whose caller waits for
-- another's, say).
local function declared_ops(policy)
  local p = util.policy_table(policy)
  local ops, skipped = {}, {}
  if p == nil or p.ops == nil then return ops, skipped end
  if type(p.ops) ~= "table" then
    util.usage_error("the policy's ops must be a table")
  end
  local names = {}
  for name in pairs(p.ops) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local d = p.ops[name]
    local spec = name
    if type(d) == "table" and d.skip then
      skipped[#skipped + 1] = name
    else
      if type(d) == "table" then
        spec = name .. "=" .. (d.kind or "other") .. ":" ..
               table.concat(d.args or {}, ",")
      end
      ops[#ops + 1] = parse_op(spec, "the policy's ops")
    end
  end
  return ops, skipped
end

-- The ops the policy answers that check does not know of: names in the
-- policy's source that, called with no arguments, get another answer
-- than an op nobody handles does. Sorted.
local function undeclared_ops(policy, ops, skipped, ctx)
  local path = util.policy_path(policy)
  local f = path and io.open(path, "r")
  if not f then return {} end
  local source = f:read("a")
  f:close()
  local known = { reset_state = true, next = true, report = true }
  for _, op in ipairs(ops) do known[op.name] = true end
  for _, name in ipairs(skipped) do known[name] = true end
  local candidates, seen = {}, {}
  for _, name in source:gmatch("([\"'])([%a_][%w_]*)%1") do
    if not known[name] and not seen[name] then
      seen[name] = true
      candidates[#candidates + 1] = name
    end
  end
  table.sort(candidates)
  if #candidates == 0 then return {} end
  -- what kind of answer: a value, or nil and which token (the detail
  -- names the op, so it is left out)
  -- what kind of answer name gets on a fresh machine, and on one with two
  -- numbers taken (an op may answer only once there is something)
  local function answer(name, taken)
    local m = util.start(policy, ctx.min, ctx.max, ctx.extra)
    m:settimeout(1000) -- an op that defers its reply is answered too
    for _ = 1, taken do m:queue_new_number() end
    local v, token, detail = m:call(name)
    m:stop()
    if v ~= nil then return "a value" end
    -- the detail of an unknown op names it: as any other name then
    local plain = tostring(detail):gsub("'" .. name .. "'", "'OP'")
    return tostring(token) .. ": " .. plain
  end
  local found = {}
  for taken = 0, 2, 2 do
    local nobody = answer("tand_check_no_such_op", taken)
    for _, name in ipairs(candidates) do
      if not found[name] and answer(name, taken) ~= nobody then
        found[name] = true
        found[#found + 1] = name
      end
    end
  end
  table.sort(found)
  return found
end

-- A random sequence of n steps {op, args}.
local function generate(ops, n, ctx, no_reset)
  local total = 0
  for _, op in ipairs(ops) do
    if not (no_reset and op.kind == "reset") then total = total + op.weight end
  end
  local seq = {}
  for i = 1, n do
    local r, pick = math.random(total), nil
    for _, op in ipairs(ops) do
      if not (no_reset and op.kind == "reset") then
        r = r - op.weight
        if r <= 0 then pick = op break end
      end
    end
    local args = {}
    for k, g in ipairs(pick.args) do args[k] = GENERATORS[g](ctx) end
    seq[i] = { op = pick, args = args }
  end
  return seq
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = (s[v] or 0) + 1 end
  return s
end

-- Calls one step; returns its results packed.
local function call(m, step)
  if step.op.kind == "reset" then
    return table.pack(m:reset_state())
  end
  return table.pack(m:call(step.op.name, table.unpack(step.args)))
end

-- The state's queue, checked on its own: a failure message or nil.
local function check_queue(st, ctx)
  if type(st) ~= "table" or type(st.queue) ~= "table" then
    return "report_state gave no queue"
  end
  local seen = {}
  for _, n in ipairs(st.queue) do
    if math.type(n) ~= "integer" or n < ctx.min or n > ctx.max then
      return string.format("the queue holds %s, outside %d..%d",
                           util.show(n), ctx.min, ctx.max)
    end
    if seen[n] then
      return string.format("the queue holds %d twice", n)
    end
    seen[n] = true
  end
end

-- Runs seq on a fresh machine in this thread, checking after each step.
-- Returns nil, or the failing step's index, the message and the log.
local function run_sequence(seq, ctx)
  local m = util.start(ctx.policy, ctx.min, ctx.max, ctx.extra)
  local log = {}
  local function fail(i, msg)
    m:stop()
    return i, msg, log
  end
  for i, step in ipairs(seq) do
    local before = m:report_state()
    local r = call(m, step)
    log[i] = r
    if r[1] == nil and type(r[2]) == "string" and BAD[r[2]] then
      return fail(i, string.format("the reply was %s: %s", r[2],
                                   tostring(r[3])))
    end
    if not m:alive() then return fail(i, "the server ended") end
    local after = m:report_state()
    local msg = check_queue(after, ctx)
    if msg then return fail(i, msg) end
    local was, now = set_of(before.queue), set_of(after.queue)
    local n = r[1]
    local kind = step.op.kind
    if kind == "queue" and math.type(n) == "integer" then
      if n < ctx.min or n > ctx.max then
        return fail(i, string.format("handed out %d, outside %d..%d", n,
                                     ctx.min, ctx.max))
      elseif was[n] then
        return fail(i, string.format("handed out %d, which was already "
                                     .. "queued", n))
      elseif not now[n] then
        return fail(i, string.format("handed out %d, which is not in "
                                     .. "the queue", n))
      end
    elseif kind == "serve" and math.type(n) == "integer" then
      if not was[n] then
        return fail(i, string.format("served %d, which was not in the "
                                     .. "queue", n))
      elseif now[n] then
        return fail(i, string.format("served %d, which is still queued",
                                     n))
      end
    elseif kind == "reset" and #after.queue > 0 then
      return fail(i, "reset_state left numbers in the queue")
    end
  end
  m:stop()
end

-- One thread of the concurrent phase (runs in its own Lua state): the
-- steps' results with their start and end times.
local function worker(m, seq)
  local tand = require "tand"
  local out = {}
  for i, step in ipairs(seq) do
    local t0 = tand.now()
    local r
    if step.kind == "reset" then
      r = table.pack(m:reset_state())
    else
      r = table.pack(m:call(step.name, table.unpack(step.args)))
    end
    out[i] = { t0 = t0, t1 = tand.now(), ok = r[1], token = r[2],
               detail = r[3] }
  end
  return out
end

-- The concurrent phase: seqs[t] is thread t's sequence of steps. Returns
-- nil, or a failure message and when each step was sent (sent[t][i]).
local function run_concurrent(seqs, ctx)
  local m = util.start(ctx.policy, ctx.min, ctx.max, ctx.extra)
  local plains, ts, sent = {}, {}, {}
  for t, seq in ipairs(seqs) do
    local plain = {}
    for i, step in ipairs(seq) do
      plain[i] = { name = step.op.name, kind = step.op.kind,
                   args = step.args }
    end
    plains[t] = plain
    ts[t] = tand.spawn(worker, m, plain)
  end
  local issued, served, resets = {}, {}, {}
  local failure
  for t = 1, #seqs do
    local res, err, detail = ts[t]:join(600000)
    sent[t] = {}
    if not res then
      failure = failure or string.format("thread %d: %s: %s", t, err,
                                         tostring(detail))
    else
      for i, r in ipairs(res) do
        local step = plains[t][i]
        sent[t][i] = r.t0
        if r.ok == nil and BAD[r.token] then
          failure = failure or string.format(
            "thread %d, step %d (%s): the reply was %s: %s", t, i,
            step.name, r.token, tostring(r.detail))
        elseif step.kind == "reset" then
          resets[#resets + 1] = r
        elseif math.type(r.ok) == "integer" and step.kind ~= "other" then
          local book = step.kind == "queue" and issued or served
          book[r.ok] = book[r.ok] or {}
          table.insert(book[r.ok], r)
        end
      end
    end
  end
  local st = m:report_state()
  failure = failure or check_queue(st, ctx)
  m:stop()
  if failure then return failure, sent end
  -- Between two issues of a number that surely did not overlap, something
  -- that may have freed it (its serve, or a reset) must have overlapped.
  local function freed_between(n, a, b)
    for _, s in ipairs(served[n] or {}) do
      if s.t1 >= a.t0 and s.t0 <= b.t1 then return true end
    end
    for _, s in ipairs(resets) do
      if s.t1 >= a.t0 and s.t0 <= b.t1 then return true end
    end
    return false
  end
  for n, list in pairs(issued) do
    table.sort(list, function(x, y) return x.t1 < y.t1 end)
    for k = 2, #list do
      local a, b = list[k - 1], list[k]
      if a.t1 < b.t0 and not freed_between(n, a, b) then
        return string.format("%d was handed out twice while queued", n),
               sent
      end
    end
  end
  if ctx.opaque then
    return nil -- ops of unknown effect may hand numbers out too
  end
  for n, list in pairs(served) do
    for _, s in ipairs(list) do
      local ok = false
      for _, i in ipairs(issued[n] or {}) do
        if i.t0 <= s.t1 then ok = true break end
      end
      if not ok then
        return string.format("%d was served but never handed out", n), sent
      end
    end
  end
end

-- Drops chunks of list, halving their length when none can go, while
-- fails(shorter list) holds, until none of one step can go or time_up()
-- says to stop; the shorter list.
local function drop_chunks(list, fails, time_up)
  local chunk = #list // 2
  while chunk >= 1 and not time_up() do
    local i, progress = 1, false
    while i <= #list and not time_up() do
      local cand = {}
      for k = 1, #list do
        if k < i or k >= i + chunk then cand[#cand + 1] = list[k] end
      end
      if #cand > 0 and fails(cand) then
        list, progress = cand, true
      else
        i = i + chunk
      end
    end
    if not progress then chunk = chunk // 2 end
  end
  return list
end

-- Shrinks a failing sequence: drops chunks while it still fails, then
-- makes the arguments small.
local function shrink(seq, ctx)
  seq = drop_chunks(seq, function(s) return run_sequence(s, ctx) ~= nil end,
                    function() return false end)
  for _, step in ipairs(seq) do
    for k, v in ipairs(step.args) do
      local simpler = math.type(v) == "integer" and
                      (step.op.args[k] == "number" and ctx.min or 0) or nil
      if simpler ~= nil and simpler ~= v then
        step.args[k] = simpler
        if not fails(seq) then step.args[k] = v end
      end
    end
  end
  -- the last step that fails is the end of the reproduction
  local i = run_sequence(seq, ctx)
  if i then
    for k = #seq, i + 1, -1 do seq[k] = nil end
  end
  return seq
end

-- Shrinks a failing concurrent run (seqs: one sequence a thread): drops
-- threads, then chunks of each thread's steps, while the run still fails.
-- Runs vary, so a candidate counts as failing if one of TRIES runs does;
-- it stops at the time budget and returns what it has.
local TRIES, BUDGET_MS = 4, 20000
local function shrink_concurrent(seqs, ctx)
  local stop = tand.now() + BUDGET_MS
  local function fails(cand)
    for _ = 1, TRIES do
      if run_concurrent(cand, ctx) then return true end
    end
    return false
  end
  local t = 1
  while t <= #seqs and #seqs > 1 and tand.now() < stop do
    local cand = table.move(seqs, 1, #seqs, 1, {})
    table.remove(cand, t)
    if fails(cand) then seqs = cand else t = t + 1 end
  end
  for k = 1, #seqs do
    local mine = drop_chunks(seqs[k], function(fewer)
      local cand = table.move(seqs, 1, #seqs, 1, {})
      cand[k] = fewer
      return fails(cand)
    end, function() return tand.now() >= stop end)
    seqs = table.move(seqs, 1, #seqs, 1, {})
    seqs[k] = mine
  end
  return seqs
end

local function step_text(step)
  local parts = {}
  for k, v in ipairs(step.args) do parts[k] = util.show(v) end
  return step.op.name .. "(" .. table.concat(parts, ", ") .. ")"
end

-- Prints a shrunk sequence, each step with its reply, the failing one
-- marked.
local function print_shrunk(small, ctx)
  local at, why, log = run_sequence(small, ctx)
  io.stdout:write(string.format("shrunk to %d steps:\n", #small))
  for k, step in ipairs(small) do
    local r = log and log[k]
    local n = r and r.n or 0
    while n > 1 and r[n] == nil do n = n - 1 end -- "1", not "1, nil, nil"
    io.stdout:write(string.format("  %d. %-32s -> %s%s\n", k,
      step_text(step), r and util.show_all(n, table.unpack(r, 1, n))
                       or "?",
      k == at and ("   <- " .. why) or ""))
  end
end

function M.main(args)
  local flags, pos = util.parse(args, {
    seed = "integer", ops = "integer", threads = "integer", op = "list",
    min = "integer", max = "integer", ["callback-timeout"] = "integer" })
  local policy = pos[1]
  if policy == nil then util.usage_error("check needs a POLICY") end
  if #pos > 1 then util.usage_error("unexpected argument '%s'", pos[2]) end
  if policy == "counter" then
    util.usage_error("check drives the deluxe machine or a policy")
  end
  local nops = flags.ops or 1000
  local threads = flags.threads or 4
  if nops < 2 then util.usage_error("--ops must be at least 2") end
  if threads < 1 or threads > 64 then
    util.usage_error("--threads must be from 1 to 64")
  end
  local seed = flags.seed
  if seed == nil then -- a new one each run, even within a second: the
    -- wall clock and the microseconds of the monotonic one
    seed = (os.time() * 1000003 + math.floor(tand.now() * 1000)) % 1000000000
  end
  local ctx = { policy = policy, min = flags.min or 1, max = flags.max or 8 }
  if policy ~= "deluxe" then
    ctx.extra = { callback_timeout = flags["callback-timeout"] or 2000 }
  elseif flags["callback-timeout"] then
    util.usage_error("--callback-timeout is for policies")
  end
  -- a policy that cannot start is a usage error, before any thread runs
  util.start(policy, ctx.min, ctx.max, ctx.extra):stop()

  local ops = {}
  for _, op in ipairs(BUILTIN) do ops[#ops + 1] = op end
  local declared, skipped = declared_ops(policy)
  for _, op in ipairs(declared) do ops[#ops + 1] = op end
  for _, spec in ipairs(flags.op or {}) do
    ops[#ops + 1] = parse_op(spec, "--op")
  end
  local undeclared = undeclared_ops(policy, ops, skipped, ctx)
  if #undeclared > 0 then
    io.stdout:write(string.format(
      "tand check: FAILED: the policy handles %s, which P.ops does not "
      .. "declare (declare %s, or give --op NAME[=KIND][:GEN,...]), so "
      .. "check would never call %s\n",
      table.concat(undeclared, ", "), #undeclared > 1 and "them" or "it",
      #undeclared > 1 and "them" or "it"))
    return 1
  end
  for _, op in ipairs(ops) do
    if op.kind == "other" then ctx.opaque = true end
  end
  local replay = string.format("replay: tand check %s --seed %d --ops %d "
                               .. "--threads %d --min %d --max %d", policy,
                               seed, nops, threads, ctx.min, ctx.max)
  for _, spec in ipairs(flags.op or {}) do
    replay = replay .. " --op " .. spec
  end

  local t0 = tand.now()
  math.randomseed(seed)
  local concurrent = nops // 2
  local per_thread = math.max(1, concurrent // threads)
  local seqs = {}
  for t = 1, threads do seqs[t] = generate(ops, per_thread, ctx) end
  local failure, sent = run_concurrent(seqs, ctx)
  if failure then
    io.stdout:write(string.format(
      "tand check: FAILED with %d threads at once (seed %d): %s\n",
      threads, seed, failure))
    -- first in sequence, in the order the steps were sent: a failure
    -- there shrinks as any sequential one
    local order = {}
    for t, seq in ipairs(seqs) do
      for i, step in ipairs(seq) do
        order[#order + 1] = { step = step, at = sent[t][i] or math.huge,
                              t = t, i = i }
      end
    end
    table.sort(order, function(a, b)
      if a.at ~= b.at then return a.at < b.at end
      return a.t < b.t or (a.t == b.t and a.i < b.i)
    end)
    local serial = {}
    for k, o in ipairs(order) do serial[k] = o.step end
    local at = run_sequence(serial, ctx)
    if at then
      for k = #serial, at + 1, -1 do serial[k] = nil end
      io.stdout:write("the same steps in one thread, in the order they "
                      .. "were sent, fail too; ")
      print_shrunk(shrink(serial, ctx), ctx)
    else
      local small = shrink_concurrent(seqs, ctx)
      local steps = 0
      for _, seq in ipairs(small) do steps = steps + #seq end
      io.stdout:write(string.format(
        "shrunk to %d threads at once, %d steps (it fails in some runs, "
        .. "not all):\n", #small, steps))
      for t, seq in ipairs(small) do
        local texts = {}
        for k, step in ipairs(seq) do texts[k] = step_text(step) end
        io.stdout:write(string.format("  thread %d: %s\n", t,
                                      table.concat(texts, ", ")))
      end
    end
    io.stdout:write(replay, "\n")
    return 1
  end
  local seq = generate(ops, nops - per_thread * threads, ctx)
  local i, msg = run_sequence(seq, ctx)
  if i == nil then
    io.stdout:write(string.format(
      "tand check: ok: %d ops (%d threads x %d at once, then %d in "
      .. "sequence), %d kinds of op, seed %d, %.2f s\n",
      per_thread * threads + #seq, threads, per_thread, #seq, #ops, seed,
      (tand.now() - t0) / 1000))
    return 0
  end
  for k = #seq, i + 1, -1 do seq[k] = nil end
  io.stdout:write(string.format(
    "tand check: FAILED at op %d of %d (seed %d): %s\n", i,
    nops - per_thread * threads, seed, msg))
  print_shrunk(shrink(seq, ctx), ctx)
  io.stdout:write(replay, "\n")
  return 1
end

return M
