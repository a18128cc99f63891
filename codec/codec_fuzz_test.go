package codec

import (
	"encoding/json"
	"testing"
)

// decodeSeeds are real client packets (PROTOCOL §3) and near misses.
var decodeSeeds = []string{
	`{"cmd":13,"hbbyte":"-127"}`,
	`{"cmd":13,"hbbyte":-127}`,
	`{"cmd":"13"}`,
	`{"cmd":3}`,
	`{"cmd":5,"token":"0123456789abcdef0123456789abcdef"}`,
	`{"cmd":7,"group_id":"g1"}`,
	`{"cmd":11,"from":"a","to":"b","chatType":2,"msgType":0,"content":{"x":"你好"},"extras":{"k":1}}`,
	`{"cmd":11,"from":"a","to":"b","chatType":"2","msgType":"0","content":"{\"asd\":\"hell,你2好\"}","createTime":1700000000000}`,
	`{"cmd":14,"userid":"u1"}`,
	`{"cmd":15,"id":"0123456789abcdef0123456789abcdef"}`,
	`{"cmd":17,"userId":"u1","type":2,"extras":{"pullType":1,"searchKey":"x"}}`,
	`{"cmd":19,"userId":"u1","type":1,"fromUserId":"u2","beginTime":0,"endTime":"1700000000000","offset":0,"count":20,"order":"desc","beforeSeq":10}`,
	`{"cmd":19,"userid":"u1","type":"0"}`,
	`{"cmd":21,"groupId":"g1"}`,
	`{"cmd":1.5}`,
	`{"cmd":99999999999999999999999}`,
	`{"cmd":true}`,
	`{"cmd":13,"token":5}`,
	`[{"cmd":13}]`,
	`{"cmd":13} trailing`,
	`{"cmd":13`,
	"{\"cmd\":13,\"token\":\"\xff\"}",
	"\x00\x01\x02",
	``,
}

// FuzzDecode: Decode never panics, a decoded packet has a command inside
// the dispatch table, and every envelope is valid JSON.
func FuzzDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s), uint16(CodeUnknownCmd))
	}
	f.Fuzz(func(t *testing.T, payload []byte, code uint16) {
		orig := string(payload)
		var d Decoder
		err := d.Decode(payload)
		if string(payload) != orig {
			t.Fatalf("Decode modified its input")
		}
		cmd := d.Req.Command()
		if cmd >= MaxCmd {
			t.Fatalf("Command() = %d, not below MaxCmd", cmd)
		}
		if err != nil && cmd != CmdUnknown {
			t.Fatalf("failed Decode left Command() = %d", cmd)
		}
		_ = d.Req.User()
		_ = d.Req.Group()
		for _, v := range []Int{d.Req.HBByte, d.Req.Type, d.Req.Count, d.Req.Offset, d.Req.BeginTime, d.Req.EndTime} {
			_, _, _ = ParseInt(v)
		}
		if err == nil {
			for name, raw := range map[string][]byte{"content": d.Req.Content, "extras": d.Req.Extras} {
				if len(raw) > 0 && !json.Valid(raw) {
					t.Fatalf("%s is not valid JSON: %q", name, raw)
				}
			}
		}

		for _, c := range []Code{Code(code), CodeUnknownCmd, CodeBadMessage, 0} {
			env := AppendEnvelope(nil, c, cmd, nil)
			if !json.Valid(env) {
				t.Fatalf("AppendEnvelope(%d, %d, nil) is not valid JSON: %s", c, cmd, env)
			}
			if json.Valid(payload) {
				env = AppendEnvelope(env[:0], c, cmd, payload)
				if !json.Valid(env) {
					t.Fatalf("AppendEnvelope(%d, %d, %q) is not valid JSON: %s", c, cmd, payload, env)
				}
			}
		}
		s := AppendString(nil, string(payload))
		if !json.Valid(s) {
			t.Fatalf("AppendString(%q) is not valid JSON: %s", payload, s)
		}
	})
}
