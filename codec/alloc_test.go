//go:build !race

package codec

import "testing"

// The race detector allocates on its own; these run without it.

func TestDecodeHeartbeatNoAlloc(t *testing.T) {
	d := AcquireDecoder()
	defer ReleaseDecoder(d)
	if err := d.Decode(heartbeatPacket); err != nil { // warm-up
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := d.Decode(heartbeatPacket); err != nil || d.Req.Command() != CmdHeartbeat {
			t.Fatalf("Decode: %v, cmd %d", err, d.Req.Command())
		}
	})
	if allocs != 0 {
		t.Fatalf("Decode of a heartbeat: %v allocs/op, want 0", allocs)
	}
}

func TestAppendNoAlloc(t *testing.T) {
	data := []byte(`{"group":"g1","result":1}`)
	tests := []struct {
		name string
		fn   func(dst []byte) []byte
	}{
		{"AppendEnvelope", func(dst []byte) []byte { return AppendEnvelope(dst, CodeJoinOK, CmdJoinResp, data) }},
		{"AppendEnvelope push", func(dst []byte) []byte { return AppendEnvelope(dst, 0, CmdChat, data) }},
		{"AppendHeartbeat", func(dst []byte) []byte { return AppendHeartbeat(dst, 1700000000000) }},
		{"AppendTextFrame", func(dst []byte) []byte { return AppendTextFrame(dst, data) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := tt.fn(nil)
			allocs := testing.AllocsPerRun(1000, func() { buf = tt.fn(buf[:0]) })
			if allocs != 0 {
				t.Fatalf("%s into a reused buffer: %v allocs/op, want 0", tt.name, allocs)
			}
		})
	}
}
