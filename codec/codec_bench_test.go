package codec

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

var (
	heartbeatPacket = []byte(`{"cmd":13,"hbbyte":"-127"}`)
	chatPacket      = []byte(`{"cmd":11,"from":"a","to":"b","chatType":2,"msgType":0,"content":{"x":"你好"},"extras":{"k":1}}`)
)

func BenchmarkAppendEnvelope(b *testing.B) {
	data := []byte(`{"group":"g1","result":1}`)
	b.Run("reused", func(b *testing.B) {
		b.ReportAllocs()
		buf := AppendEnvelope(nil, CodeJoinOK, CmdJoinResp, data)
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			buf = AppendEnvelope(buf[:0], CodeJoinOK, CmdJoinResp, data)
		}
	})
	// Baseline: a fresh buffer per envelope.
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(AppendEnvelope(nil, CodeJoinOK, CmdJoinResp, data))))
		for b.Loop() {
			_ = AppendEnvelope(nil, CodeJoinOK, CmdJoinResp, data)
		}
	})
}

func BenchmarkAppendHeartbeat(b *testing.B) {
	b.ReportAllocs()
	buf := AppendHeartbeat(nil, 1700000000000)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		buf = AppendHeartbeat(buf[:0], 1700000000000)
	}
}

func benchmarkDecode(b *testing.B, payload []byte) {
	b.Run("sonic", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		d := AcquireDecoder()
		defer ReleaseDecoder(d)
		if err := d.Decode(payload); err != nil { // warm-up: sonic compiles its decoder on first use
			b.Fatal(err)
		}
		for b.Loop() {
			if err := d.Decode(payload); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Baseline: encoding/json into the same struct.
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		var r Request
		for b.Loop() {
			r = Request{}
			if err := json.Unmarshal(payload, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecodeHeartbeat(b *testing.B) { benchmarkDecode(b, heartbeatPacket) }

func BenchmarkDecodeChat(b *testing.B) { benchmarkDecode(b, chatPacket) }

func BenchmarkAppendString(b *testing.B) {
	for _, size := range []int{16, 256, 4096} {
		ascii := strings.Repeat("abcdefgh", size/8)
		mixed := strings.Repeat("ab\"你好\n", size/10+1)[:size] // may end inside a rune: that path counts too
		for _, in := range []struct {
			name string
			s    string
		}{{"ascii", ascii}, {"mixed", mixed}} {
			b.Run(in.name+"/"+strconv.Itoa(size), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(in.s)))
				buf := AppendString(nil, in.s)
				for b.Loop() {
					buf = AppendString(buf[:0], in.s)
				}
			})
		}
	}
}
