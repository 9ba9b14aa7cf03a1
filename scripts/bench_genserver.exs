# scripts/bench_genserver.exs MS THREADS... - the Elixir anchor: a
# take-a-number GenServer (the number, and the last caller), called by
# THREADS processes for MS milliseconds each; then casts from 1 and 4
# senders (an Erlang mailbox is unbounded). Prints the same columns as
# bench_engine. One call (cast) in 16 is timed, as in bench_lua.lua and
# bench_engine.c, so that reading the clock weighs the same on each side.
defmodule Ticket do
  use GenServer
  def init(n), do: {:ok, {n, nil}}
  def handle_call({:take, caller}, _from, {n, _}), do: {:reply, n, {n + 1, caller}}
  def handle_cast({:take, caller}, {n, _}), do: {:noreply, {n + 1, caller}}
end

defmodule Bench do
  # every 16th turn reads the clock: the deadline, and that turn's latency
  def call_loop(pid, id, deadline, n, lat) when rem(n, 16) == 0 do
    t0 = System.monotonic_time(:nanosecond)
    if t0 >= deadline do
      {n, lat}
    else
      GenServer.call(pid, {:take, id})
      call_loop(pid, id, deadline, n + 1, [System.monotonic_time(:nanosecond) - t0 | lat])
    end
  end

  def call_loop(pid, id, deadline, n, lat) do
    GenServer.call(pid, {:take, id})
    call_loop(pid, id, deadline, n + 1, lat)
  end

  def cast_loop(pid, id, deadline, n, lat) when rem(n, 16) == 0 do
    t0 = System.monotonic_time(:nanosecond)
    if t0 >= deadline do
      {n, lat}
    else
      GenServer.cast(pid, {:take, id})
      cast_loop(pid, id, deadline, n + 1, [System.monotonic_time(:nanosecond) - t0 | lat])
    end
  end

  def cast_loop(pid, id, deadline, n, lat) do
    GenServer.cast(pid, {:take, id})
    cast_loop(pid, id, deadline, n + 1, lat)
  end

  def phase(kind, threads, ms) do
    {:ok, pid} = GenServer.start_link(Ticket, 0)
    start = System.monotonic_time(:nanosecond)
    deadline = start + ms * 1_000_000
    fun = if kind == :call, do: &call_loop/5, else: &cast_loop/5
    tasks = for i <- 1..threads, do: Task.async(fn -> fun.(pid, i, deadline, 0, []) end)
    results = Task.await_many(tasks, :infinity)
    # casts count once the server has handled them all
    GenServer.call(pid, {:take, 0}, :infinity)
    elapsed = (System.monotonic_time(:nanosecond) - start) / 1.0e9
    total = Enum.sum(Enum.map(results, fn {n, _} -> n end))
    lat = results |> Enum.flat_map(fn {_, l} -> l end) |> Enum.sort() |> List.to_tuple()
    len = tuple_size(lat)
    pct = fn p -> elem(lat, min(len - 1, trunc(len * p))) / 1000 end
    name = if kind == :call, do: "genserver_call", else: "genserver_cast"
    f = fn x, w, d -> String.pad_leading(:erlang.float_to_binary(x / 1, decimals: d), w) end
    IO.puts(String.pad_trailing(name, 14) <> " " <>
              String.pad_leading(Integer.to_string(threads), 3) <> "  " <>
              f.(total / elapsed, 12, 0) <> "  " <> f.(pct.(0.5), 9, 2) <> "  " <>
              f.(pct.(0.99), 9, 2) <> "  " <> f.(pct.(0.999), 9, 2) <> "  0")
    GenServer.stop(pid)
  end
end

[ms | counts] = System.argv()
ms = String.to_integer(ms)
IO.puts("kind           thr       per_sec    p50_us    p99_us  p99.9_us  errors")
for c <- counts, do: Bench.phase(:call, String.to_integer(c), ms)
for c <- [1, 4], do: Bench.phase(:cast, c, ms)
