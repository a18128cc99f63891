package engine

import (
	"testing"

	"github.com/gobwas/ws"
)

func BenchmarkParseUpgrade(b *testing.B) {
	req := []byte(upgradeRequest("/?token=0123456789abcdef0123456789abcdef"))
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, _, _, err := parseUpgrade(req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFrameHeader(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"7bit", 100}, {"16bit", 4 << 10}, {"64bit", 70000}} {
		frame := ws.MustCompileFrame(ws.MaskFrameWith(ws.NewTextFrame(make([]byte, size.n)), seedMask))
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			var sink int
			for b.Loop() {
				h, hsize, ok := frameHeader(frame)
				if !ok {
					b.Fatal("incomplete")
				}
				if code, _ := checkHeader(h, 1<<20); code != 0 {
					b.Fatal(code)
				}
				sink += hsize
			}
			_ = sink
		})
	}
}
