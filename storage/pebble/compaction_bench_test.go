//go:build linux

package pebble

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// BenchmarkSteadyStateCompaction writes chat-shaped records into a Pebble
// directory with the store's tuning (tunedOptions), paced (200 000
// messages/s unless rate= says otherwise) in rounds of 10 s, and reports
// the process CPU each round took per message (round0_cpu_us/msg, …). The
// first round lands in an empty LSM and compares layouts; once the one
// compaction Pebble runs at a time never stops, a round's CPU is about a
// core whatever the layout, so later rounds tell when that happens, not
// what a message costs (BENCHMARKS.md, issue 15). Run it once, on an
// otherwise idle machine:
//
//	go test -run XXX -bench SteadyStateCompaction -benchtime 1x ./storage/pebble
//
// Layouts: "conv" is the store's (a 149-byte record at h|conv|seq and a
// d|from|id idempotency record per message); "time" keys the record by
// its time-ordered id (m|id|from) and keeps a 34-byte reference at
// h|conv|seq, the layout a time-ordered history would have; "history" is
// "conv" without the idempotency record.
// IMGATE_BENCH_PEBBLE="memtable=32,lbase=64,rounds=6,record=95" changes
// the tuning (MiB), the rounds and the record's bytes (149: a 60-byte text
// between two short user ids, as stored today).
func BenchmarkSteadyStateCompaction(b *testing.B) {
	memtable, lbase, rounds, record, rate := 0, 0, 4, 149, 200_000
	for _, kv := range strings.Split(os.Getenv("IMGATE_BENCH_PEBBLE"), ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, _ := strconv.Atoi(v)
		switch k {
		case "memtable":
			memtable = n
		case "lbase":
			lbase = n
		case "rounds":
			rounds = n
		case "record":
			record = max(n, 40)
		case "rate":
			rate = max(n, 1000)
		}
	}
	for _, layout := range []string{"conv", "history", "time"} {
		b.Run(layout, func(b *testing.B) {
			cache := pebble.NewCache(blockCacheSize)
			defer cache.Unref()
			po := tunedOptions(cache)
			if memtable > 0 {
				po.MemTableSize = uint64(memtable) << 20
			}
			if lbase > 0 {
				po.LBaseMaxBytes = int64(lbase) << 20
			}
			pdb, err := pebble.Open(b.TempDir(), po)
			if err != nil {
				b.Fatal(err)
			}
			defer pdb.Close()
			for r, st := range compactionRounds(b, pdb, layout, rounds, record, rate) {
				b.ReportMetric(st.cpu, fmt.Sprintf("round%d_cpu_us/msg", r))
				b.ReportMetric(st.compacted, fmt.Sprintf("round%d_compacted_B/msg", r))
				b.ReportMetric(st.debtMB, fmt.Sprintf("round%d_debt_MB", r))
			}
		})
	}
}

// roundStats is one round of compactionRounds: process CPU per message in
// µs, bytes compactions wrote per message, and Pebble's estimated
// compaction debt at the round's end.
type roundStats struct{ cpu, compacted, debtMB float64 }

// compactionRounds writes rounds of 10 s of messages of 200 conversations
// in synced batches of 500 at rate a second.
func compactionRounds(b *testing.B, pdb *pebble.DB, layout string, rounds, record, rate int) []roundStats {
	const (
		batch = 500
		convs = 200
	)
	perRound := 10 * rate // 10 s a round
	rec := make([]byte, record)
	for i := range rec {
		rec[i] = byte(i * 7)
	}
	copy(rec[min(60, record-40):], "a typical customer-service question, about sixty bytes long.")
	ref := make([]byte, 34)
	seqs := make([]uint64, convs)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	compacted := func() uint64 {
		var n uint64
		m := pdb.Metrics()
		for l := range m.Levels {
			n += m.Levels[l].TableBytesCompacted
		}
		return n
	}
	var out []roundStats
	for r := 0; r < rounds; r++ {
		c0, b0, start := cpu(), compacted(), time.Now()
		for i := 0; i < perRound; {
			if due := time.Duration(i) * time.Second / time.Duration(rate); time.Since(start) < due {
				time.Sleep(due - time.Since(start))
			}
			bt := pdb.NewBatch()
			for j := 0; j < batch; j, i = j+1, i+1 {
				p := i % convs
				seqs[p]++
				from := uint64(p + 1)
				var id [16]byte // time-ordered, as message ids are
				binary.BigEndian.PutUint64(id[:], uint64(time.Now().UnixNano()))
				binary.BigEndian.PutUint64(id[8:], uint64(r*perRound+i))
				hk := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte(prefixHistory), from), from+1000), seqs[p])
				copy(rec[20:], id[:])
				switch layout {
				case "conv":
					_ = bt.Set(hk, rec, nil)
					_ = bt.Set(append(binary.BigEndian.AppendUint64([]byte(prefixDedup), from), id[:]...), hk[2:], nil)
				case "history": // no idempotency record
					_ = bt.Set(hk, rec, nil)
				case "time":
					_ = bt.Set(binary.BigEndian.AppendUint64(append([]byte("m|"), id[:]...), from), rec, nil)
					copy(ref[10:], id[:])
					_ = bt.Set(hk, ref, nil)
				}
			}
			if err := bt.Commit(pebble.Sync); err != nil {
				b.Fatal(err)
			}
			_ = bt.Close()
		}
		out = append(out, roundStats{
			cpu:       float64((cpu() - c0).Microseconds()) / float64(perRound),
			compacted: float64(compacted()-b0) / float64(perRound),
			debtMB:    float64(pdb.Metrics().Compact.EstimatedDebt) / (1 << 20),
		})
	}
	return out
}
