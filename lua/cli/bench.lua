-- lua/cli/bench.lua - `tand bench`: a load test of one machine. N client
-- threads call it with a mix of operations for S seconds; a progress bar
-- shows the live rate on a terminal; then a table (calls/s, latency
-- percentiles, errors by token) and a latency histogram, or JSON, and an
-- SVG of the histogram.
local tand = require "tand"
local util = require "tand.cli.util"

local M = {}

M.usage = [[
usage: tand bench POLICY [options]

Load-tests a policy, or the built-in "deluxe" or "counter": client threads
call it with a mix of operations; a live progress line on a terminal, then
calls/s, latency percentiles, errors by token and a latency histogram.
Exit code 1 when the server crashed or a call timed out.

options:
  --clients N        client threads, 1..1024 (default 4)
  --seconds S        how long (default 5)
  --mix OP:W,...     the operations and their weights (default
                     queue:70,serve:30; the counter: next:100)
  --json             one JSON object instead of the table
  --plot FILE.svg    write the latency histogram as an SVG
  --min N, --max M   the deluxe range (default: one that never fills)
  -h, --help         this text
]]

local SHORT = { queue = "queue_new_number", serve = "serve_next_queued_number",
                report = "report_state" }

-- Parses "queue:70,serve:30" into { {op=, weight=}, ... }.
local function parse_mix(text, counter)
  local mix = {}
  for item in text:gmatch("[^,]+") do
    local name, w = item:match("^%s*([%a_][%w_]*)%s*:%s*(%d+)%s*$")
    if name == nil then
      util.usage_error("--mix: '%s' is not OP:WEIGHT", item)
    end
    w = math.tointeger(tonumber(w))
    if w == nil or w <= 0 then
      util.usage_error("--mix: the weight of %s must be > 0", name)
    end
    if counter and name ~= "next" and name ~= "report" then
      util.usage_error("--mix: the counter knows next and report")
    end
    mix[#mix + 1] = { op = SHORT[name] or name, name = name, weight = w }
  end
  if #mix == 0 then util.usage_error("--mix is empty") end
  return mix
end

-- Errors that mean the server failed (others, such as empty_queue, are
-- ordinary answers): with any of them the exit code is 1.
local FAILURES = { server_crashed = true, noproc = true, timeout = true,
                   bad_value = true }

-- Latency buckets: bucket k holds [2^(k-1), 2^k) us; bucket 0 is < 1 us.
local NBUCKETS = 24

-- One client (runs in its own Lua state): calls until `until_ms`;
-- returns calls, a sample of latencies (us), errors by token, buckets.
local function client(m, mix, until_ms, seed, counter)
  local tand = require "tand"
  math.randomseed(seed)
  local total = 0
  for _, e in ipairs(mix) do total = total + e.weight end
  local calls, errors, buckets, sample = 0, {}, {}, {}
  for k = 0, 23 do buckets[k + 1] = 0 end
  while tand.now() < until_ms do
    for _ = 1, 16 do
      local r, pick = math.random(total), mix[1]
      for _, e in ipairs(mix) do
        r = r - e.weight
        if r <= 0 then pick = e break end
      end
      local t0 = tand.now()
      local ok, token
      if counter and pick.op == "next" then
        ok, token = m:next("bench")
      elseif counter then
        ok, token = m:report()
      else
        ok, token = m:call(pick.op)
      end
      local us = (tand.now() - t0) * 1000
      calls = calls + 1
      if ok == nil and type(token) == "string" then
        errors[token] = (errors[token] or 0) + 1
      end
      local k = us < 1 and 0 or math.min(23, math.floor(math.log(us, 2)) + 1)
      buckets[k + 1] = buckets[k + 1] + 1
      if #sample < 50000 then
        sample[#sample + 1] = us
      elseif math.random(calls) <= 50000 then
        sample[math.random(50000)] = us
      end
    end
  end
  return calls, sample, errors, buckets
end

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.min(#sorted, math.floor(#sorted * p) + 1)]
end

local function bucket_label(k)
  if k == 0 then return "<1" end
  return string.format("%d-%d", 2 ^ (k - 1) // 1, 2 ^ k // 1)
end

local function escape(text)
  return (text:gsub("&", "&amp;"):gsub("<", "&lt;"))
end

-- The SVG of the histogram: one bar per latency bucket from the first to
-- the last that is not empty, counts on a log scale (so that the tail's
-- few calls show), with count and latency axes, grid lines and the
-- p50, p99 and p99.9 latencies marked, on a white background.
local function svg(res, title)
  local first, last
  for k = 0, NBUCKETS - 1 do
    if res.buckets[k + 1] > 0 then
      first = first or k
      last = k
    end
  end
  first, last = first or 0, last or 0
  local maxc = 1
  for k = first, last do maxc = math.max(maxc, res.buckets[k + 1]) end
  local decades = math.max(1, math.ceil(math.log(maxc, 10) - 1e-9))
  local rows = last - first + 1
  local left, top, row, plotw = 90, 50, 22, 520
  local w, h = left + plotw + 120, top + rows * row + 60
  local function x_of(count) -- log10 scale, 1 at the axis
    if count <= 0 then return left end
    return left + plotw * (math.log(count, 10) + 0.3) / (decades + 0.3)
  end
  local function y_of(us) -- a latency's place on the log2 bucket axis
    local pos = us < 1 and us or math.log(us, 2) + 1 -- bucket k spans [k, k+1)
    return top + (pos - first) * row
  end
  local out = {
    string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" '
                  .. 'height="%d" font-family="sans-serif" font-size="12">',
                  w, h),
    string.format('<rect width="%d" height="%d" fill="white"/>', w, h),
    string.format('<text x="10" y="22" font-size="14">%s</text>',
                  escape(title)),
  }
  -- grid and count axis: 1, 10, 100, ...
  for d = 0, decades do
    local x = x_of(10 ^ d)
    out[#out + 1] = string.format(
      '<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>'
      .. '<text x="%.1f" y="%d" text-anchor="middle">%s</text>',
      x, top, x, top + rows * row, x, top + rows * row + 16,
      d <= 3 and string.format("%d", 10 ^ d) or ("1e" .. d))
  end
  out[#out + 1] = string.format(
    '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>'
    .. '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>'
    .. '<text x="%d" y="%d" text-anchor="middle">calls (log scale)</text>'
    .. '<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">'
    .. 'latency (us)</text>',
    left, top, left, top + rows * row, left, top + rows * row,
    left + plotw, top + rows * row, left + plotw // 2, top + rows * row + 36,
    16, top + rows * row // 2, 16, top + rows * row // 2)
  for k = first, last do
    local y, c = top + (k - first) * row, res.buckets[k + 1]
    out[#out + 1] = string.format(
      '<text x="%d" y="%d" text-anchor="end">%s</text>',
      left - 6, y + 15, escape(bucket_label(k)))
    if c > 0 then
      local len = x_of(c) - left
      -- the count inside a long bar, after a short one
      local inside = len > 70
      out[#out + 1] = string.format(
        '<rect x="%d" y="%d" width="%.1f" height="%d" fill="#4a7ab5"/>'
        .. '<text x="%.1f" y="%d" fill="%s" text-anchor="%s">%d</text>',
        left, y + 2, math.max(1, len), row - 4,
        inside and left + len - 4 or left + len + 4, y + 15,
        inside and "white" or "#333", inside and "end" or "start", c)
    end
  end
  -- the percentiles: a line across at each
  for _, p in ipairs({ { "p50", res.p50, "#2a9d3a" },
                       { "p99", res.p99, "#e08a00" },
                       { "p99.9", res.p999, "#c0392b" } }) do
    local y = y_of(p[2])
    out[#out + 1] = string.format(
      '<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" '
      .. 'stroke-width="2" stroke-dasharray="6 3"/>'
      .. '<text x="%d" y="%.1f" fill="%s">%s %.1f us</text>',
      left, y, left + plotw, y, p[3], left + plotw + 6, y + 4, p[3], p[1],
      p[2])
  end
  out[#out + 1] = "</svg>\n"
  return table.concat(out, "\n")
end

local function progress(native, tty, t0, seconds, m)
  if not tty then return end
  local width = (native.term_width() or 80) - 40
  if width < 10 then width = 10 end
  local done = math.min(1, (tand.now() - t0) / (seconds * 1000))
  local st = m:stats()
  local rate = st.calls / math.max(0.001, (tand.now() - t0) / 1000)
  local filled = math.floor(done * width)
  -- "\27[K" clears what a longer line before it left
  io.stderr:write(string.format("\r[%s%s] %3d%%  %10.0f calls/s\27[K",
    ("#"):rep(filled), ("."):rep(width - filled), math.floor(done * 100),
    rate))
end

function M.main(args)
  local flags, pos = util.parse(args, {
    clients = "integer", seconds = "number", mix = "string",
    json = "boolean", plot = "string", min = "integer", max = "integer" })
  local policy = pos[1]
  if policy == nil then util.usage_error("bench needs a POLICY") end
  if #pos > 1 then util.usage_error("unexpected argument '%s'", pos[2]) end
  local clients = flags.clients or 4
  local seconds = flags.seconds or 5
  if clients < 1 or clients > 1024 then
    util.usage_error("--clients must be from 1 to 1024")
  end
  if not (seconds > 0 and seconds <= 3600) then
    util.usage_error("--seconds must be above 0 and at most 3600")
  end
  local counter = policy == "counter"
  local mix = parse_mix(flags.mix or (counter and "next:100"
                                      or "queue:70,serve:30"), counter)
  local m
  if counter then
    m = util.start(policy, flags.min, flags.max)
  elseif flags.min == nil and flags.max == nil then
    -- a queue that never fills
    m = util.start(policy, 1, math.maxinteger, { call_timeout = 10000 })
  else
    m = util.start(policy, flags.min, flags.max, { call_timeout = 10000 })
  end
  if flags.plot then
    local f, err = io.open(flags.plot, "w")
    if not f then util.usage_error("cannot write --plot: %s", err) end
    f:close()
  end

  local ok_native, native = pcall(require, "tand.cli.native")
  local tty = ok_native and native.isatty(2) and not flags.json
  local t0 = tand.now()
  local threads = {}
  local plain = {}
  for i, e in ipairs(mix) do plain[i] = { op = e.op, weight = e.weight } end
  for i = 1, clients do
    threads[i] = tand.spawn(client, m, plain, t0 + seconds * 1000, i,
                            counter)
  end
  local res = { calls = 0, errors = {}, buckets = {} }
  for k = 1, NBUCKETS do res.buckets[k] = 0 end
  local sample = {}
  for i = 1, clients do
    while not threads[i]:done() do
      progress(native, tty, t0, seconds, m)
      tand.sleep(100)
    end
    local calls, s, errs, b = threads[i]:join(60000)
    if calls == nil then
      io.stderr:write("tand bench: client ", i, ": ", tostring(s), ": ",
                      tostring(errs), "\n")
      return 1
    end
    res.calls = res.calls + calls
    for _, v in ipairs(s) do sample[#sample + 1] = v end
    for tok, n in pairs(errs) do res.errors[tok] = (res.errors[tok] or 0) + n end
    for k = 1, NBUCKETS do res.buckets[k] = res.buckets[k] + b[k] end
  end
  local elapsed = (tand.now() - t0) / 1000
  if tty then io.stderr:write("\r\27[K") end
  m:stop()
  table.sort(sample)
  res.per_sec = res.calls / elapsed
  res.p50, res.p99, res.p999 = percentile(sample, 0.5),
    percentile(sample, 0.99), percentile(sample, 0.999)
  local nerrors, failed = 0, false
  for tok, n in pairs(res.errors) do
    nerrors = nerrors + n
    failed = failed or FAILURES[tok] ~= nil
  end

  local mixtext = {}
  for i, e in ipairs(mix) do mixtext[i] = e.name .. ":" .. e.weight end
  mixtext = table.concat(mixtext, ",")
  if flags.plot then
    local f = assert(io.open(flags.plot, "w"))
    f:write(svg(res, string.format("tand bench %s: %d clients, %.0f calls/s",
                                   policy, clients, res.per_sec)))
    f:close()
  end
  if flags.json then
    local hist = util.array()
    for k = 0, NBUCKETS - 1 do
      if res.buckets[k + 1] > 0 then
        hist[#hist + 1] = { lo_us = k == 0 and 0 or 2 ^ (k - 1) // 1,
                            hi_us = 2 ^ k // 1, count = res.buckets[k + 1] }
      end
    end
    io.stdout:write(util.json({
      policy = policy, clients = clients, seconds = elapsed, mix = mixtext,
      calls = res.calls, calls_per_sec = res.per_sec, p50_us = res.p50,
      p99_us = res.p99, p999_us = res.p999, errors = res.errors,
      histogram = hist }), "\n")
    return failed and 1 or 0
  end

  local out = io.stdout
  out:write(string.format("tand bench %s: %d clients, %.1f s, mix %s\n\n",
                          policy, clients, elapsed, mixtext))
  out:write(string.format("%12s %12s %10s %10s %10s %8s\n", "calls",
                          "calls/s", "p50_us", "p99_us", "p99.9_us",
                          "errors"))
  out:write(string.format("%12d %12.0f %10.2f %10.2f %10.2f %8d\n",
                          res.calls, res.per_sec, res.p50, res.p99, res.p999,
                          nerrors))
  local toks = {}
  for tok in pairs(res.errors) do toks[#toks + 1] = tok end
  table.sort(toks)
  for _, tok in ipairs(toks) do
    out:write(string.format("  %-36s %d\n", tok, res.errors[tok]))
  end
  out:write("\nlatency (us)\n")
  local maxc = 1
  for k = 1, NBUCKETS do maxc = math.max(maxc, res.buckets[k]) end
  local bar = ok_native and native.isatty(1) and "\u{2588}" or "#"
  for k = 0, NBUCKETS - 1 do
    local c = res.buckets[k + 1]
    if c > 0 then
      out:write(string.format("%12s |%s %d\n", bucket_label(k),
                              bar:rep(math.max(1, c * 40 // maxc)), c))
    end
  end
  if flags.plot then out:write("\nwrote ", flags.plot, "\n") end
  return failed and 1 or 0
end

return M
