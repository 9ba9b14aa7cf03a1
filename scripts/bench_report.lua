-- scripts/bench_report.lua OUT_DIR BENCHMARKS.md PLOT.svg - turns the
-- outputs of scripts/bench into BENCHMARKS.md (machine, commands, the
-- targets with measured ratios, every table) and a plot of throughput and
-- p99 latency against client threads (gnuplot, when installed).
local dir, md_path, svg_path = arg[1], arg[2], arg[3]

local function read(name)
  local f = io.open(dir .. "/" .. name)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- rows[kind][threads] = { per_sec, p50, p99, p999 }
local rows = {}
for _, file in ipairs({ "engine.txt", "genserver.txt", "lua.txt",
                        "durable.txt", "redis.txt" }) do
  for line in (read(file) or ""):gmatch("[^\n]+") do
    local kind, thr, rest = line:match("^(%S+)%s+(%d+)%s+(.*)$")
    if kind then
      local v = {}
      for num in rest:gmatch("%S+") do v[#v + 1] = tonumber(num) end
      if v[1] then
        rows[kind] = rows[kind] or {}
        rows[kind][tonumber(thr)] = { per_sec = v[1], p50 = v[2],
                                      p99 = v[3], p999 = v[4] }
      end
    end
  end
end
local memory = {}
for line in (read("memory.txt") or ""):gmatch("[^\n]+") do
  local kind, count, bytes, mb, rate =
    line:match("^(%a+)%s+(%d+)%s+([%d.]+)%s+([%d.]+)%s+([%d.]+)")
  if kind then
    memory[kind] = { count = tonumber(count), bytes = tonumber(bytes),
                     mb = tonumber(mb), rate = tonumber(rate) }
  end
end

local function rate(kind, thr)
  return rows[kind] and rows[kind][thr] and rows[kind][thr].per_sec
end

local function fmt_rate(v)
  if not v then return "n/a" end
  if v >= 1e6 then return ("%.2f M/s"):format(v / 1e6) end
  if v >= 1e3 then return ("%.1f k/s"):format(v / 1e3) end
  return ("%.0f /s"):format(v)
end

-- target rows: what, measured, against, ratio, needed, met
local targets = {}
local function ratio_target(what, a, b, need, higher)
  local r = (a and b and b > 0) and a / b or nil
  local met = r and (higher and r >= need or (not higher and r <= need))
  targets[#targets + 1] = {
    what, fmt_rate(a), fmt_rate(b),
    r and ("%.2fx"):format(r) or "n/a",
    (higher and ">= " or "<= ") .. need .. "x",
    r == nil and "not measured" or (met and "met" or "NOT met") }
end
local function abs_target(what, value, shown, need_text, met)
  targets[#targets + 1] = { what, shown, "", "", need_text,
                            value == nil and "not measured"
                              or (met and "met" or "NOT met") }
end

ratio_target("sync call, 1 client / GenServer.call", rate("tand_call", 1),
             rate("genserver_call", 1), 1.4, true)
ratio_target("sync call, 16 clients / GenServer.call", rate("tand_call", 16),
             rate("genserver_call", 16), 2, true)
ratio_target("sync call, 1 client / spinning delegation", rate("tand_call", 1),
             rate("spin_deleg", 1), 0.6, true)
ratio_target("sync call, 1 client / mutex+condvar server", rate("tand_call", 1),
             rate("mutex_cv", 1), 1, true)
local cast = math.max(rate("tand_cast", 1) or 0, rate("tand_cast", 4) or 0)
abs_target("casts, bounded mailbox", cast > 0 and cast or nil, fmt_rate(cast),
           ">= 5 M/s", cast >= 5e6)
ratio_target("built-in call / Lua policy call (VIP), 1 thread",
             rate("lua_deluxe", 1), rate("lua_vip", 1), 1.5, false)
ratio_target("durable call, 1 client / Redis INCR fsync always",
             rate("tand_full", 1), rate("redis_incr_fsync", 1), 1, true)
ratio_target("durable call, 50 clients / Redis INCR fsync always",
             rate("tand_full", 50), rate("redis_incr_fsync", 50), 1, true)
ratio_target("sync call, 1 client / Redis EVALSHA ticket script",
             rate("tand_call", 1), rate("redis_evalsha", 1), 1, true)
local b, p = memory.builtin, memory.policy
abs_target("idle built-in servers", b and b.mb,
           b and ("%.1f MB for %d (%.0f B each)"):format(b.mb * 100000 / b.count,
                                                        100000, b.bytes) or "n/a",
           "< 200 MB for 100,000", b and b.mb * 100000 / b.count < 200)
abs_target("built-in server start rate", b and b.rate,
           b and fmt_rate(b.rate) or "n/a", ">= 100 k/s", b and b.rate >= 1e5)
abs_target("idle policy server", p and p.bytes,
           p and ("%.1f KB"):format(p.bytes / 1024) or "n/a", "< 64 KB",
           p and p.bytes < 64 * 1024)
ratio_target("no collapse: 64 clients / 16 clients", rate("tand_call", 64),
             rate("tand_call", 16), 0.5, true)

local out = {}
local function w(s) out[#out + 1] = s or "" end
w("# tand benchmarks")
w()
w("Written by `./scripts/bench` (`QUICK=1 ./scripts/bench` for a short run);")
w("every figure below comes from that one run on this machine. The machine")
w("is a small shared VM: absolute figures move by 10-40% (and the 1-client")
w("call sometimes by 3x) from run to run, so the targets are ratios between")
w("rows of the same run. Raw outputs: `build-release/bench/`.")
w()
w("## Machine")
w()
w("```")
w((read("machine.txt") or ""):gsub("\n$", ""))
w("```")
w()
w("## Targets")
w()
w("| target | tand | anchor | ratio | needed | |")
w("|---|---|---|---|---|---|")
for _, t in ipairs(targets) do w("| " .. table.concat(t, " | ") .. " |") end
w()
w("![throughput and p99 latency against client threads](docs/benchmarks.svg)")
w()
local sections = {
  { "engine.txt", "Engine: take a number on one server (C)",
    "`tand_call`/`tand_cast`: a server with a trivial C handler. Anchors " ..
    "written for this: `mutex_cv`, one server thread fed through a " ..
    "mutex-protected queue, each caller waiting on its own condition " ..
    "variable; `spin_deleg`, a server thread spinning over one cache line " ..
    "per client (clients yield once they outnumber the cores)." },
  { "genserver.txt", "Elixir GenServer (the same work)",
    "`scripts/bench_genserver.exs`: GenServer.call from N processes; casts " ..
    "go to an unbounded mailbox." },
  { "lua.txt", "Through the Lua API",
    "`lua_next`: `m:next(\"me\")` on the counter; `lua_deluxe`: " ..
    "`queue_new_number` + `serve_next_queued_number` on the built-in " ..
    "machine; `lua_vip`: the same calls through `examples/policies/vip.lua`." },
  { "durable.txt", "Durable calls",
    "A journaled deluxe machine (SQLite WAL): `tand_full` fsyncs each batch " ..
    "before its replies (group commit), `tand_os` leaves flushing to the OS." },
  { "redis.txt", "Redis (redis-benchmark against a local redis-server)",
    "`redis_incr_fsync`: INCR with appendonly and appendfsync always; " ..
    "`redis_incr`, `redis_evalsha` (a script that records the caller and " ..
    "increments the number): no persistence." },
  { "memory.txt", "Memory and start rate",
    "Resident bytes per idle server (`/proc/self/statm` before and after " ..
    "starting them) and servers started per second." },
}
for _, s in ipairs(sections) do
  w("## " .. s[2])
  w()
  w(s[3])
  w()
  w("```")
  w(((read(s[1]) or "(not run)"):gsub("\n$", "")))
  w("```")
  w()
end
local notes = io.open("docs/performance-notes.md")
if notes then
  w(notes:read("a"))
  notes:close()
end
local f = assert(io.open(md_path, "w"))
f:write(table.concat(out, "\n"))
f:close()

-- the plot
local kinds = { "tand_call", "genserver_call", "mutex_cv", "spin_deleg" }
local data = dir .. "/plot.dat"
f = assert(io.open(data, "w"))
for i, kind in ipairs(kinds) do
  f:write(("# %s\n"):format(kind))
  for _, thr in ipairs({ 1, 2, 4, 16, 64 }) do
    local r = rows[kind] and rows[kind][thr]
    if r then f:write(("%d %f %f\n"):format(thr, r.per_sec / 1e6, r.p99 or 0)) end
  end
  f:write("\n\n")
end
f:close()
if os.execute("command -v gnuplot >/dev/null 2>&1") then
  local gp = assert(io.popen("gnuplot", "w"))
  gp:write(([[
set terminal svg size 900,420 font "sans,11" noenhanced
set output "%s"
set multiplot layout 1,2 title "tand and its anchors, same run"
set logscale x 2
set xlabel "client threads"
set key top right
set ylabel "calls/s (millions)"
plot for [i=0:3] "%s" index i using 1:2 with linespoints title word("%s", i+1)
set logscale y 10
set ylabel "p99 latency (us)"
set key top left
plot for [i=0:3] "%s" index i using 1:3 with linespoints title word("%s", i+1)
unset multiplot
]]):format(svg_path, data, table.concat(kinds, " "), data,
           table.concat(kinds, " ")))
  gp:close()
end
