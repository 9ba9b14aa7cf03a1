-- scripts/bench_report.lua OUT_DIR BENCHMARKS.md PLOT.svg - turns the
-- outputs of scripts/bench into BENCHMARKS.md (machine, the targets with
-- measured ratios quiet and with a busy neighbour, the instructions per
-- call, every table) and a plot of throughput and p99 latency against
-- client threads (gnuplot, when installed). OUT_DIR/rounds/PROGRAM.CONDITION.ROUND.txt hold one round
-- each; every row is the median round of its condition.
local dir, md_path, svg_path = arg[1], arg[2], arg[3]

local function read(name)
  local f = io.open(dir .. "/" .. name)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local programs = { "engine", "genserver", "lua", "durable", "redis", "cluster" }
local conds = { "quiet", "busy" }
local cond_title = { quiet = "quiet", busy = "with a busy neighbour" }

-- got[prog][cond][round] = text of that round's output
local got = {}
local ls = assert(io.popen("ls " .. dir .. "/rounds 2>/dev/null"))
for name in ls:lines() do
  local prog, cond, r = name:match("^(%w+)%.(%w+)%.(%d+)%.txt$")
  if prog then
    got[prog] = got[prog] or {}
    got[prog][cond] = got[prog][cond] or {}
    got[prog][cond][tonumber(r)] = read("rounds/" .. name)
  end
end
ls:close()

-- table[prog] = { cols = {...}, order = { "kind/thr", ... },
--                 [cond] = { ["kind/thr"] = { rounds of {numbers} } } }
local tables = {}
for _, prog in ipairs(programs) do
  local t = { cols = nil, order = {}, seen = {} }
  for _, cond in ipairs(conds) do
    t[cond] = {}
    for _, text in pairs((got[prog] or {})[cond] or {}) do
      for line in text:gmatch("[^\n]+") do
        local kind, thr, rest = line:match("^(%S+)%s+(%d+)%s+(.*)$")
        if line:match("^kind%s") then
          t.cols = {}
          for c in line:gmatch("%S+") do t.cols[#t.cols + 1] = c end
        elseif kind then
          local v = {}
          for num in rest:gmatch("%S+") do v[#v + 1] = tonumber(num) end
          if v[1] then
            local key = kind .. "/" .. thr
            if not t.seen[key] then
              t.seen[key] = true
              t.order[#t.order + 1] = { kind = kind, thr = tonumber(thr), key = key }
            end
            t[cond][key] = t[cond][key] or {}
            table.insert(t[cond][key], v)
          end
        end
      end
    end
  end
  tables[prog] = t
end
-- the programs print their rows in a fixed order; rounds may be read in
-- any order, so sort by the order of kinds first seen, then threads
for _, t in pairs(tables) do
  local first = {}
  for i, o in ipairs(t.order) do first[o.kind] = first[o.kind] or i end
  table.sort(t.order, function(a, b)
    if a.kind ~= b.kind then return first[a.kind] < first[b.kind] end
    return a.thr < b.thr
  end)
end

-- the median round of a row (by rate), its range and the errors of all
local function median(list)
  if not list or #list == 0 then return nil end
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s, function(a, b) return a[1] < b[1] end)
  return { v = s[(#s + 1) // 2], min = s[1][1], max = s[#s][1], n = #s }
end

-- rows[cond][kind][thr] = the median round
local rows = { quiet = {}, busy = {} }
for _, prog in ipairs(programs) do
  local t = tables[prog]
  for _, cond in ipairs(conds) do
    for _, o in ipairs(t.order) do
      local m = median(t[cond][o.key])
      if m then
        rows[cond][o.kind] = rows[cond][o.kind] or {}
        rows[cond][o.kind][o.thr] = m
      end
    end
  end
end

local function rate(cond, kind, thr)
  local r = rows[cond][kind] and rows[cond][kind][thr]
  return r and r.v[1]
end
local function p99(cond, kind, thr)
  local r = rows[cond][kind] and rows[cond][kind][thr]
  return r and r.v[3]
end

local memory = {}
for line in (read("memory.txt") or ""):gmatch("[^\n]+") do
  local kind, count, bytes, mb, per_sec =
    line:match("^(%a+)%s+(%d+)%s+([%d.]+)%s+([%d.]+)%s+([%d.]+)")
  if kind then
    memory[kind] = { count = tonumber(count), bytes = tonumber(bytes),
                     mb = tonumber(mb), rate = tonumber(per_sec) }
  end
end

-- instructions per iteration, from OUT_DIR/instr.txt (one run of
-- scripts/bench_instr.lua): instr[kind] = { calls, n, per_iter, per_call }
local instr, instr_n = {}, nil
for line in (read("instr.txt") or ""):gmatch("[^\n]+") do
  local kind, calls, n, per_iter, per_call = line:match(
    "^(%S+)%s+(%d+)%s+(%d+)%s+%d+%s+%d+%s+([%d.]+)%s+([%d.]+)%s*$")
  if kind then
    instr[kind] = { calls = tonumber(calls), n = tonumber(n),
                    per_iter = tonumber(per_iter), per_call = tonumber(per_call) }
    instr_n = instr_n or tonumber(n)
  end
end

local function fmt_rate(v)
  if not v then return "n/a" end
  if v >= 1e6 then return ("%.2f M/s"):format(v / 1e6) end
  if v >= 1e3 then return ("%.1f k/s"):format(v / 1e3) end
  return ("%.0f /s"):format(v)
end
local function short(v)
  if v >= 1e6 then return ("%.2fM"):format(v / 1e6) end
  if v >= 1e3 then return ("%.1fk"):format(v / 1e3) end
  return ("%.0f"):format(v)
end

-- A target row: { what, needed, quiet measured, ratio, met, busy ... }.
-- ratio(what, a, b, need_quiet, need_busy): a / b (kinds and threads)
-- at least need; value(what, f, need_text): f(cond) -> shown, met.
local function verdict(ok, measured)
  if not measured then return "not measured" end
  return ok and "met" or "**NOT met**"
end
local function ratio_row(list, what, a, b, need_q, need_b, at_most)
  local row = { what }
  local needs = need_q == need_b and
    ((at_most and "<= " or ">= ") .. need_q .. "x") or
    (">= " .. need_q .. "x / " .. need_b .. "x")
  row[2] = needs
  for _, cond in ipairs(conds) do
    local need = cond == "quiet" and need_q or need_b
    local x, y = rate(cond, a[1], a[2]), rate(cond, b[1], b[2])
    local r = x and y and y > 0 and x / y or nil
    local ok = r and (at_most and r <= need or (not at_most and r >= need))
    row[#row + 1] = x and y and (fmt_rate(x) .. " / " .. fmt_rate(y)) or "n/a"
    row[#row + 1] = r and ("%.2fx"):format(r) or "n/a"
    row[#row + 1] = verdict(ok, r)
  end
  list[#list + 1] = row
end
local function value_row(list, what, needs, f)
  local row = { what, needs }
  for _, cond in ipairs(conds) do
    local shown, ok, measured = f(cond)
    row[#row + 1] = shown or "n/a"
    row[#row + 1] = ""
    row[#row + 1] = verdict(ok, measured)
  end
  list[#list + 1] = row
end

local function best_cast(cond)
  local a, b = rate(cond, "tand_cast", 1), rate(cond, "tand_cast", 4)
  if not a and not b then return nil end
  if (a or 0) >= (b or 0) then return a, 1 end
  return b, 4
end

-- The targets of the engine issue (shared/DESIGN.md "Performance targets")
local targets = {}
ratio_row(targets, "Lua `m:next`, 1 client / GenServer.call, 1 client",
          { "lua_next", 1 }, { "genserver_call", 1 }, 3, 2)
ratio_row(targets, "Lua `m:next`, 16 threads / GenServer.call, 16 processes",
          { "lua_next", 16 }, { "genserver_call", 16 }, 2, 1.5)
ratio_row(targets, "C `tand_call`, 1 client / plain mutex, 1 thread",
          { "tand_call", 1 }, { "plain_mutex", 1 }, 0.3, 0.3)
ratio_row(targets, "C `tand_call`, 16 threads / GenServer.call, 16 processes",
          { "tand_call", 16 }, { "genserver_call", 16 }, 5, 5)
ratio_row(targets, "C `tand_call`, 64 threads / 16 threads (no collapse)",
          { "tand_call", 64 }, { "tand_call", 16 }, 0.5, 0.5)
value_row(targets, "C casts, bounded mailbox (best of 1 and 4 senders)",
          ">= 5 M/s", function(cond)
  local v, n = best_cast(cond)
  if not v then return nil end
  return fmt_rate(v) .. " (" .. n .. ")", v >= 5e6, true
end)
ratio_row(targets, "durable call, 1 client / Redis INCR appendfsync always",
          { "tand_full", 1 }, { "redis_incr_fsync", 1 }, 1, 1)
ratio_row(targets, "durable call, 50 clients / Redis INCR appendfsync always",
          { "tand_full", 50 }, { "redis_incr_fsync", 50 }, 1, 1)
local b, p = memory.builtin, memory.policy
ratio_row(targets, "built-in call / VIP policy call (`queue_vip` + serve), 1 thread",
          { "lua_deluxe", 1 }, { "lua_vip_call", 1 }, 1.25, 1.25, true)
ratio_row(targets, "Lua, 1 thread with 64 requests in flight (a set) / " ..
          "GenServer.call, 64 processes",
          { "lua_inflight", 64 }, { "genserver_call", 64 }, 2, 2)
-- the cluster's: remote calls' p50 and rate, and the takeover time (ms
-- from the kill -9 of the owner to the first number another host is
-- handed), the median of the rounds of each condition
local function p50(cond, kind, thr)
  local r = rows[cond][kind] and rows[cond][kind][thr]
  return r and r.v[2]
end
local function takeover(cond)
  local list, lease = {}, nil
  for _, text in pairs((got.cluster or {})[cond] or {}) do
    local ms, l = text:match("takeover_ms: (%-?%d+) lease_ms: (%d+)")
    if ms and tonumber(ms) >= 0 then
      list[#list + 1] = tonumber(ms)
      lease = tonumber(l)
    end
  end
  table.sort(list)
  return list[(#list + 1) // 2], lease, #list
end
value_row(targets, "cluster: remote call p50, 1 client (3 nats-servers)",
          "<= 0.5 ms", function(cond)
  local v = p50(cond, "cluster_remote", 1)
  if not v then return nil end
  return ("%.3f ms"):format(v / 1000), v <= 500, true
end)
value_row(targets, "cluster: remote calls, 16 clients", ">= 10 k/s",
          function(cond)
  local v = rate(cond, "cluster_remote", 16)
  if not v then return nil end
  return fmt_rate(v), v >= 1e4, true
end)
value_row(targets, "cluster: takeover after the owner is killed -9",
          "<= lease_ms + 1 s", function(cond)
  local ms, lease, n = takeover(cond)
  if not ms then return nil end
  return ("%d ms (lease_ms %d; median of %d)"):format(ms, lease, n),
         ms <= lease + 1000, true
end)
value_row(targets, "100,000 idle built-in servers", "< 200 MB", function(cond)
  if not b then return nil end
  local mb = b.mb * 100000 / b.count
  local shown = ("%.1f MB (%.0f B each)"):format(mb, b.bytes)
  if cond == "busy" then shown = "measured once, quiet" end
  return shown, mb < 200, true
end)

-- Earlier checks of this file, kept to follow them from run to run
local others = {}
ratio_row(others, "C call, 1 client / GenServer.call, 1 client",
          { "tand_call", 1 }, { "genserver_call", 1 }, 1.4, 1.4)
ratio_row(others, "C call, 1 client / spinning delegation",
          { "tand_call", 1 }, { "spin_deleg", 1 }, 0.6, 0.6)
ratio_row(others, "C call, 1 client / mutex+condvar server",
          { "tand_call", 1 }, { "mutex_cv", 1 }, 1, 1)
ratio_row(others, "built-in call / Lua policy call (VIP), 1 thread",
          { "lua_deluxe", 1 }, { "lua_vip", 1 }, 1.5, 1.5, true)
ratio_row(others, "C call, 1 client / Redis EVALSHA ticket script",
          { "tand_call", 1 }, { "redis_evalsha", 1 }, 1, 1)
value_row(others, "built-in server start rate", ">= 100 k/s", function(cond)
  if not b then return nil end
  return cond == "busy" and "measured once, quiet" or fmt_rate(b.rate),
         b.rate >= 1e5, true
end)
value_row(others, "idle policy server (VIP)", "< 64 KB", function(cond)
  if not p then return nil end
  return cond == "busy" and "measured once, quiet" or
         ("%.1f KB"):format(p.bytes / 1024), p.bytes < 64 * 1024, true
end)

-- what else the machine ran: others[cond] = cores used outside the run,
-- one per program and round (load.txt, written by scripts/bench)
local load = read("load.txt")
local others_load = { quiet = {}, busy = {} }
for line in (load or ""):gmatch("[^\n]+") do
  local cond, o = line:match("^%S+%s+(%a+)%s+%d+%s+%S+%s+%S+%s+%S+%s+(%S+)")
  if cond and others_load[cond] then table.insert(others_load[cond], tonumber(o)) end
end
local function loaded(cond)
  local n = 0
  for _, o in ipairs(others_load[cond]) do if o > 0.25 then n = n + 1 end end
  return n, #others_load[cond]
end

local out = {}
local function w(s) out[#out + 1] = s or "" end
local function target_table(list)
  w("| target | needed | quiet: tand / anchor | ratio | | " ..
    "busy neighbour: tand / anchor | ratio | |")
  w("|---|---|---|---|---|---|---|---|")
  for _, t in ipairs(list) do w("| " .. table.concat(t, " | ") .. " |") end
end

local machine = read("machine.txt") or ""
local commit = machine:match("commit: (%S+)") or "unknown"
local changed = machine:match("uncommitted in core/ and lua/: ([^\n]*)") or "?"
local nrounds = machine:match("rounds: (%d+)") or "?"
w("# tand benchmarks")
w()
w(("Measured on commit `%s`%s."):format(commit, changed == "none" and "" or
  (" with uncommitted changes to " .. changed:gsub("%s+$", ""))))
w()
w("Written by `./scripts/bench` (`QUICK=1 ./scripts/bench` for a short run);")
w("every figure below comes from that one run on this machine.")
w("The machine is a small shared VM: absolute figures move by 10-40% (and")
w("the 1-client call sometimes by 3x) from run to run, so the targets are")
w("ratios between rows of the same run. Every row runs in " .. nrounds ..
  " rounds per")
w("condition, quiet and with a busy neighbour (a process spinning on one")
w("core, started before each program and stopped after it), the rounds")
w("alternating quiet, busy, quiet, busy; each figure is the median round.")
w("Raw outputs, one file per program and round: `build-release/bench/`.")
w()
w("## Machine")
w()
w("```")
w((machine:gsub("\n$", "")))
w("```")
w()
w("## Targets")
w()
w("The engine issue's targets (shared/DESIGN.md, \"Performance targets\"),")
w("each beside its ratio in this run. Where the issue names no separate")
w("figure for a busy neighbour, the quiet figure is asked of both.")
w()
target_table(targets)
w()
for _, cond in ipairs(conds) do
  local n, all = loaded(cond)
  if n > 0 then
    w(("Note: in %d of %d %s program-rounds, processes outside the run used " ..
       "more than a quarter of a core (see \"Load during the rounds\")."):format(
       n, all, cond))
    w()
  end
end
w("![throughput and p99 latency against client threads](docs/benchmarks.svg)")
w()
w("### Other checks")
w()
w("Earlier targets of this file, kept to follow them from run to run.")
w()
target_table(others)
w()

-- instructions per call: issue 14's ratios, from one callgrind pass
w("## Instructions per call (callgrind)")
w()
local skipped = read("skipped.txt")
if not next(instr) then
  w((skipped and skipped:match("instr: [^\n]*")) or
    "(not run, or it failed: see above)")
  w()
else
  w("Each workload from one client, run once (not per round, and not with " ..
    "a neighbour: instructions do not depend on load) under `valgrind " ..
    "--tool=callgrind`, with n and with 2n iterations (n = " ..
    tostring(instr_n) .. "); a figure is (Ir(2n) - Ir(n)) / n, the " ..
    "instructions of one iteration with startup cancelled " ..
    "(`scripts/bench_instr.lua`). With one client the engine runs each " ..
    "call on the caller's thread, so the counts hardly move from run to " ..
    "run (Lua seeds its string hashes from the clock as it starts, which " ..
    "moves a Lua row by up to about 3%). The deluxe rows do a pair of calls per " ..
    "iteration; per call is half of it.")
  w()
  local what = {
    { "c_next", "C `tand_call` of the counter's next op, the caller " ..
      "\"me\" in its data (`bench_instr`)" },
    { "lua_next", "`m:next(\"me\")` on `tand.start(0)`" },
    { "lua_deluxe", "`m:queue_new_number()` + `m:serve_next_queued_number()` " ..
      "on the built-in deluxe machine" },
    { "lua_vip_call", "`m:call(\"queue_vip\")` + `m:serve_next_queued_number()` " ..
      "on the VIP policy" },
    { "lua_vip", "`m:queue_new_number()` + `m:serve_next_queued_number()` " ..
      "on the VIP policy" },
  }
  w("| row | workload | calls per iteration | instructions per iteration " ..
    "| per call |")
  w("|---|---|---|---|---|")
  for _, r in ipairs(what) do
    local v = instr[r[1]]
    if v then
      w(("| `%s` | %s | %d | %.0f | %.0f |"):format(r[1], r[2], v.calls,
        v.per_iter, v.per_call))
    else
      w(("| `%s` | %s | | not measured | |"):format(r[1], r[2]))
    end
  end
  w()
  local function per(kind) return instr[kind] and instr[kind].per_call end
  local function iratio(what_, a, b, need, needs)
    local x, y = per(a), per(b)
    local r = x and y and y > 0 and x / y or nil
    local shown = r and ("%.0f / %.0f"):format(x, y) or "n/a"
    local v = need and verdict(r and r <= need, r) or
      (r and (r <= 1.25 and "within 1.25x" or "over 1.25x") or "not measured")
    w(("| %s | %s | %s | %s | %s |"):format(what_, needs, shown,
      r and ("%.2fx"):format(r) or "n/a", v))
  end
  w("| issue 14 | needed | instructions per call | ratio | |")
  w("|---|---|---|---|---|")
  iratio("Lua `m:next` / C `tand_call` (counter next), 1 client",
         "lua_next", "c_next", 1.5, "<= 1.5x")
  iratio("VIP `queue_vip` + serve / built-in `queue_new_number` + serve",
         "lua_vip_call", "lua_deluxe", nil, "the target is on time (below)")
  iratio("VIP `queue_new_number` + serve / built-in `queue_new_number` + serve",
         "lua_vip", "lua_deluxe", nil, "(for comparison)")
  w()
  local times = {}
  for _, cond in ipairs(conds) do
    local x, y = rate(cond, "lua_deluxe", 1), rate(cond, "lua_vip_call", 1)
    local r = x and y and y > 0 and x / y or nil
    times[#times + 1] = r and ("%.2fx %s, %s"):format(r, cond_title[cond],
      verdict(r <= 1.25, r)) or ("n/a " .. cond_title[cond])
  end
  w("VIP queue_vip+serve / built-in, time: " .. table.concat(times, "; ") ..
    " (target <= 1.25x; 1 thread, `lua_deluxe` / `lua_vip_call` calls/s, " ..
    "median rounds).")
  w()
end

-- the load of each round: what else the machine was doing
w("## Load during the rounds")
w()
w("Per program and round: wall time, cores busy on the whole machine")
w("(`/proc/stat`), cores used by the benchmark and its neighbour, the rest")
w("(`others`: processes outside the run) and steal time. The neighbour's")
w("own account of the share of a core it got follows.")
w()
local share = {}
for _, cond in ipairs({ "busy" }) do
  for r = 1, 99 do
    for _, prog in ipairs(programs) do
      local s = read(("rounds/%s.%s.%d.neighbour"):format(prog, cond, r))
      local pct = s and s:match("(%d+)%% of a core")
      if pct then share[#share + 1] = tonumber(pct) end
    end
  end
end
if load then
  for _, cond in ipairs(conds) do
    local l = {}
    for i, o in ipairs(others_load[cond]) do l[i] = o end
    table.sort(l)
    if #l > 0 then
      w(("- %s rounds: others used %.2f cores (median), at most %.2f; " ..
         "more than a quarter of a core in %d of %d program-rounds.")
        :format(cond, l[(#l + 1) // 2], l[#l], loaded(cond), #l))
    end
  end
  if #share > 0 then
    table.sort(share)
    w(("- the neighbour got %d%% of a core (median of %d programs), %d%% at least.")
      :format(share[(#share + 1) // 2], #share, share[1]))
  end
  w()
  w("```")
  w((load:gsub("\n$", "")))
  w("```")
  w()
end
local failures = read("failures.txt")
if failures then
  w("Failed or timed out (their rows are missing from those rounds):")
  w()
  w("```")
  w((failures:gsub("\n$", "")))
  w("```")
  w()
end

-- one program's medians, quiet and busy, in that program's columns
local function median_block(prog)
  local t = tables[prog]
  if not t.cols or #t.order == 0 then return nil end
  local lines = {}
  local function line(cells) lines[#lines + 1] = table.concat(cells, " ") end
  for ci, cond in ipairs(conds) do
    if ci > 1 then lines[#lines + 1] = "" end
    lines[#lines + 1] = cond_title[cond] .. ":"
    local cells = { ("%-16s %3s"):format("kind", "thr") }
    for i = 3, #t.cols do cells[#cells + 1] = ("%10s"):format(t.cols[i]) end
    cells[#cells + 1] = "  per_sec min..max (rounds)"
    line(cells)
    for _, o in ipairs(t.order) do
      local m = median(t[cond][o.key])
      if m then
        cells = { ("%-16s %3d"):format(o.kind, o.thr) }
        for i = 3, #t.cols do
          local col, v = t.cols[i], m.v[i - 2]
          if col == "errors" then -- every round's errors, not the median's
            v = 0
            for _, round in ipairs(t[cond][o.key]) do v = v + (round[i - 2] or 0) end
          end
          if v == nil then cells[#cells + 1] = ("%10s"):format("-")
          elseif col == "per_sec" or col == "errors" or math.type(v) == "integer" then
            cells[#cells + 1] = ("%10.0f"):format(v)
          else cells[#cells + 1] = ("%10.2f"):format(v) end
        end
        cells[#cells + 1] = ("  %s..%s (%d)"):format(short(m.min), short(m.max), m.n)
        line(cells)
      end
    end
  end
  return table.concat(lines, "\n")
end

local sections = {
  { "engine", "Engine: take a number on one server (C)",
    "`tand_call`/`tand_cast`: a server with a trivial C handler. Anchors " ..
    "written for this: `plain_mutex`, the same handler under a pthread " ..
    "mutex on each caller's own thread (the floor for serialized access " ..
    "in one process); `mutex_cv`, one server thread fed through a " ..
    "mutex-protected queue, each caller waiting on its own condition " ..
    "variable; `spin_deleg`, a server thread spinning over one cache line " ..
    "per client (clients yield once they outnumber the cores). Calls are " ..
    "counted in blocks of 64 of which one is timed; a cast's latency is " ..
    "the mean of its block of 64. `errors` adds up every round's." },
  { "genserver", "Elixir GenServer (the same work)",
    "`scripts/bench_genserver.exs`: GenServer.call from N processes; casts " ..
    "go to an unbounded mailbox. One call in 16 is timed." },
  { "lua", "Through the Lua API",
    "`lua_next`: `m:next(\"me\")` on the counter from N `tand.spawn` " ..
    "threads, each calling in a loop for the phase; `lua_deluxe`: " ..
    "`queue_new_number` + `serve_next_queued_number` on the built-in " ..
    "machine; `lua_vip`: the same calls through `examples/policies/vip.lua`; " ..
    "`lua_vip_call`: `m:call(\"queue_vip\")` + `serve_next_queued_number` " ..
    "through the VIP policy (its own op, served first); `lua_inflight`: " ..
    "one thread keeping 64 calls (`\"next\", \"me\"`) in flight on the " ..
    "counter through a request set, each reply taken sending the next. " ..
    "One call in 16 is timed." },
  { "durable", "Durable calls",
    "A journaled deluxe machine (SQLite WAL): `tand_full` fsyncs each batch " ..
    "before its replies (group commit), `tand_os` leaves flushing to the OS." },
  { "redis", "Redis (redis-benchmark against a local redis-server)",
    "`redis_incr_fsync`: INCR with appendonly and appendfsync always; " ..
    "`redis_incr`, `redis_evalsha` (a script that records the caller and " ..
    "increments the number): no persistence. redis-benchmark counts " ..
    "requests, so each round sends about a phase's worth of them." },
  { "cluster", "Cluster (NATS JetStream, 3 nats-servers on loopback)",
    "`core/tests/bench_cluster.c`: a deluxe machine (`queue_new_number`) " ..
    "with stream and lease replicas 3, every batch one fenced append " ..
    "acknowledged before its replies. `cluster_remote`: calls from a " ..
    "host that does not own the machine (the owner is another process), " ..
    "over NATS request/reply; then the owner is killed -9 and " ..
    "`takeover_ms` is the time from the kill to the first number the " ..
    "calling host is handed (it takes the machine over, `lease_ms` 1000); " ..
    "`cluster_owner`: calls on the new owner's own host (no NATS hop, " ..
    "the append still). Every call is timed." },
}
for _, s in ipairs(sections) do
  w("## " .. s[2])
  w()
  w(s[3])
  w()
  w("```")
  w(median_block(s[1]) or
    ((skipped and skipped:match(s[1] .. ": [^\n]*")) or "(not run)"))
  if s[1] == "cluster" and takeover("quiet") then
    for _, cond in ipairs(conds) do
      local ms, lease, n = takeover(cond)
      if ms then
        w(("takeover_ms %s: %d (median of %d rounds; lease_ms %d)")
          :format(cond, ms, n, lease))
      end
    end
  end
  w("```")
  w()
end
w("## Memory and start rate")
w()
w("Resident bytes per idle server (`/proc/self/statm` before and after " ..
  "starting them) and servers started per second; measured once, quiet.")
w()
w("```")
w(((read("memory.txt") or "(not run)"):gsub("\n$", "")))
w("```")
w()
local notes = io.open("docs/performance-notes.md")
if notes then
  w(notes:read("a"))
  notes:close()
end
local f = assert(io.open(md_path, "w"))
f:write(table.concat(out, "\n"))
f:close()

-- the plot: each kind quiet (solid) and with a busy neighbour (dashed)
local kinds = { "tand_call", "genserver_call", "plain_mutex", "mutex_cv",
                "spin_deleg" }
local data = dir .. "/plot.dat"
local titles = {}
f = assert(io.open(data, "w"))
for _, kind in ipairs(kinds) do
  for _, cond in ipairs(conds) do
    titles[#titles + 1] = kind .. (cond == "busy" and " (busy)" or "")
    f:write(("# %s %s\n"):format(kind, cond))
    for _, thr in ipairs({ 1, 2, 4, 16, 64 }) do
      local r = rate(cond, kind, thr)
      if r then
        f:write(("%d %f %f\n"):format(thr, r / 1e6,
                                      math.max(p99(cond, kind, thr) or 0, 0.01)))
      end
    end
    f:write("\n\n")
  end
end
f:close()
if os.execute("command -v gnuplot >/dev/null 2>&1") then
  local colors = { "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e" }
  local function curves(col)
    local c = {}
    for i, title in ipairs(titles) do
      local k = (i - 1) // 2
      c[#c + 1] = ('"%s" index %d using 1:%d with linespoints lc rgb "%s" ' ..
                   'dt %d pt %d title "%s"'):format(data, i - 1, col,
                   colors[k + 1], (i - 1) % 2 + 1, k + 5, title)
    end
    return "plot " .. table.concat(c, ", \\\n  ")
  end
  local gp = assert(io.popen("gnuplot", "w"))
  gp:write(([[
set terminal svg size 1000,480 font "sans,11" noenhanced
set output "%s"
set multiplot layout 1,2 title "tand and its anchors, one run, median rounds (dashed: with a busy neighbour)"
set logscale x 2
set xrange [0.8:80]
set xtics (1, 2, 4, 16, 64)
set logscale y 10
set xlabel "client threads"
set key outside bottom center horizontal maxrows 4 font "sans,9"
set ylabel "calls/s (millions)"
%s
set ylabel "p99 latency (us)"
%s
unset multiplot
]]):format(svg_path, curves(2), curves(3)))
  gp:close()
end
