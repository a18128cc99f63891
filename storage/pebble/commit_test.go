package pebble

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// PROTOCOL §1.4: /metrics counts the store's write stalls and their
// length (every ack waits during one). Pebble reports a stall's begin
// and end to the listener Open installs; the current stall counts
// towards the total before it ends.
func TestSection1_4_WriteStallsCounted(t *testing.T) {
	db, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if cs := db.CommitStats(); cs.Stalls != 0 || cs.StallTime != 0 {
		t.Fatalf("fresh store: %d stalls, %v", cs.Stalls, cs.StallTime)
	}
	db.stalls.begin(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	time.Sleep(time.Millisecond) // a stall that lasts: the clock is monotonic
	during := db.CommitStats()
	if during.Stalls != 1 || during.StallTime <= 0 {
		t.Fatalf("during a stall: %d stalls, %v", during.Stalls, during.StallTime)
	}
	db.stalls.end()
	after := db.CommitStats()
	if after.Stalls != 1 || after.StallTime < during.StallTime {
		t.Fatalf("after the stall: %d stalls, %v (during: %v)", after.Stalls, after.StallTime, during.StallTime)
	}
	db.stalls.end() // an end without a begin changes nothing
	if again := db.CommitStats(); again != after {
		t.Fatalf("a second end: %+v, want %+v", again, after)
	}
}
