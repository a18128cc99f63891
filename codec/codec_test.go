package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func TestParseInt(t *testing.T) {
	tests := []struct {
		name   string
		in     Int
		want   int64
		wantOK bool
		err    error
	}{
		{"absent", "", 0, false, nil},
		{"zero", "0", 0, true, nil},
		{"small", "13", 13, true, nil},
		{"negative", "-127", -127, true, nil},
		{"plus sign", "+13", 13, true, nil},
		{"negative zero", "-0", 0, true, nil},
		{"max int64", "9223372036854775807", 1<<63 - 1, true, nil},
		{"min int64", "-9223372036854775808", -1 << 63, true, nil},
		{"overflow by one", "9223372036854775808", 0, true, ErrBadNumber},
		{"negative overflow", "-9223372036854775809", 0, true, ErrBadNumber},
		{"19 nines", "9999999999999999999", 0, true, ErrBadNumber},
		{"20 digits", "18446744073709551615", 0, true, ErrBadNumber},
		{"fraction", "1.5", 0, true, ErrBadNumber},
		{"integral fraction", "13.0", 0, true, ErrBadNumber},
		{"exponent", "1e2", 0, true, ErrBadNumber},
		{"letters", "abc", 0, true, ErrBadNumber},
		{"sign only", "-", 0, true, ErrBadNumber},
		{"plus only", "+", 0, true, ErrBadNumber},
		{"double sign", "--1", 0, true, ErrBadNumber},
		{"leading space", " 1", 0, true, ErrBadNumber},
		{"trailing space", "1 ", 0, true, ErrBadNumber},
		{"hex", "0x10", 0, true, ErrBadNumber},
		{"fullwidth digits", "１３", 0, true, ErrBadNumber},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, ok, err := ParseInt(tt.in)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("ParseInt(%q) err = %v, want %v", tt.in, err, tt.err)
			}
			if ok != tt.wantOK {
				t.Errorf("ParseInt(%q) ok = %v, want %v", tt.in, ok, tt.wantOK)
			}
			if err == nil && n != tt.want {
				t.Errorf("ParseInt(%q) = %d, want %d", tt.in, n, tt.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr error
		cmd     Cmd
		check   func(t *testing.T, r *Request)
	}{
		{name: "heartbeat with string hbbyte", in: `{"cmd":13,"hbbyte":"-127"}`, cmd: CmdHeartbeat,
			check: func(t *testing.T, r *Request) {
				wantInt(t, "hbbyte", r.HBByte, -127)
			}},
		{name: "heartbeat with number hbbyte", in: `{"cmd":13,"hbbyte":-127}`, cmd: CmdHeartbeat,
			check: func(t *testing.T, r *Request) {
				wantInt(t, "hbbyte", r.HBByte, -127)
			}},
		{name: "string cmd", in: `{"cmd":"13"}`, cmd: CmdHeartbeat},
		{name: "string numeric fields", in: `{"cmd":"19","type":"0","count":"20","offset":5}`, cmd: CmdGetMessage,
			check: func(t *testing.T, r *Request) {
				wantInt(t, "type", r.Type, 0)
				wantInt(t, "count", r.Count, 20)
				wantInt(t, "offset", r.Offset, 5)
			}},
		{name: "surrounding whitespace", in: " \r\n\t{\"cmd\":13}\n ", cmd: CmdHeartbeat},
		{name: "userid alias", in: `{"cmd":17,"userid":"u1"}`, cmd: CmdGetUser,
			check: func(t *testing.T, r *Request) {
				wantStr(t, "User()", r.User(), "u1")
			}},
		{name: "userId wins over userid", in: `{"cmd":17,"userid":"alt","userId":"main"}`, cmd: CmdGetUser,
			check: func(t *testing.T, r *Request) {
				wantStr(t, "User()", r.User(), "main")
			}},
		{name: "group_id alias", in: `{"cmd":7,"group_id":"g1"}`, cmd: CmdJoinGroup,
			check: func(t *testing.T, r *Request) {
				wantStr(t, "Group()", r.Group(), "g1")
			}},
		{name: "groupId wins over group_id", in: `{"cmd":7,"group_id":"alt","groupId":"main"}`, cmd: CmdJoinGroup,
			check: func(t *testing.T, r *Request) {
				wantStr(t, "Group()", r.Group(), "main")
			}},
		{name: "unknown fields ignored", in: `{"cmd":13,"x":{"y":[1,2,{"z":null}]},"createTime":"soon","n":1.5}`, cmd: CmdHeartbeat},
		{name: "chat", in: `{"cmd":11,"from":"a","to":"b","chatType":2,"msgType":0,"content":{"x":"你好"},"extras":{"k":1}}`, cmd: CmdChat,
			check: func(t *testing.T, r *Request) {
				wantStr(t, "from", r.From, "a")
				wantStr(t, "to", r.To, "b")
				wantInt(t, "chatType", r.ChatType, 2)
				wantInt(t, "msgType", r.MsgType, 0)
				wantStr(t, "content", string(r.Content), `{"x":"你好"}`)
				wantStr(t, "extras", string(r.Extras), `{"k":1}`)
			}},
		{name: "string content kept raw", in: `{"cmd":11,"content":"hi \"you\""}`, cmd: CmdChat,
			check: func(t *testing.T, r *Request) {
				wantStr(t, "content", string(r.Content), `"hi \"you\""`)
			}},
		{name: "null token", in: `{"cmd":5,"token":null}`, cmd: CmdLogin},
		{name: "login token", in: `{"cmd":5,"token":"T0k"}`, cmd: CmdLogin,
			check: func(t *testing.T, r *Request) {
				wantStr(t, "token", r.Token, "T0k")
			}},
		{name: "missing cmd", in: `{}`, cmd: CmdUnknown},
		{name: "null cmd", in: `{"cmd":null}`, cmd: CmdUnknown},
		{name: "zero cmd", in: `{"cmd":0}`, cmd: CmdUnknown},
		{name: "negative cmd", in: `{"cmd":-1}`, cmd: CmdUnknown},
		{name: "cmd at MaxCmd", in: `{"cmd":64}`, cmd: CmdUnknown},
		{name: "cmd just below MaxCmd", in: `{"cmd":31}`, cmd: 31},
		{name: "huge cmd", in: `{"cmd":99999999999999999999999}`, cmd: CmdUnknown},
		{name: "cmd overflowing uint8", in: `{"cmd":269}`, cmd: CmdUnknown},
		{name: "fractional cmd", in: `{"cmd":1.5}`, cmd: CmdUnknown},
		{name: "exponent cmd", in: `{"cmd":1e1}`, cmd: CmdUnknown},
		{name: "fractional string cmd", in: `{"cmd":"13.5"}`, cmd: CmdUnknown},

		{name: "empty", in: ``, wantErr: ErrMalformed},
		{name: "spaces", in: `   `, wantErr: ErrMalformed},
		{name: "not JSON", in: `hello`, wantErr: ErrMalformed},
		{name: "JSON array", in: `[{"cmd":13}]`, wantErr: ErrMalformed},
		{name: "JSON string", in: `"{\"cmd\":13}"`, wantErr: ErrMalformed},
		{name: "JSON null", in: `null`, wantErr: ErrMalformed},
		{name: "truncated", in: `{"cmd":13`, wantErr: ErrMalformed},
		{name: "trailing garbage", in: `{"cmd":13} x`, wantErr: ErrMalformed},
		{name: "two objects", in: `{"cmd":13}{"cmd":13}`, wantErr: ErrMalformed},
		{name: "bool cmd", in: `{"cmd":true}`, wantErr: ErrMalformed},
		{name: "object cmd", in: `{"cmd":{}}`, wantErr: ErrMalformed},
		{name: "non-numeric string cmd", in: `{"cmd":"abc"}`, wantErr: ErrMalformed},
		{name: "number token", in: `{"cmd":13,"token":5}`, wantErr: ErrMalformed},
		{name: "object userId", in: `{"cmd":17,"userId":{"a":1}}`, wantErr: ErrMalformed},
		{name: "missing value", in: `{"cmd":11,"content":}`, wantErr: ErrMalformed},
		// Content and extras are passed through to other clients as raw
		// JSON: a packet that is not valid JSON must not get that far
		// (found by FuzzDecode, testdata/fuzz/FuzzDecode/9afa6606c6a038eb).
		{name: "bad escape in content", in: `{"cmd":11,"content":"\0"}`, wantErr: ErrMalformed},
		{name: "bad escape in extras", in: `{"cmd":11,"content":"x","extras":{"a":"\q"}}`, wantErr: ErrMalformed},
		{name: "raw control char in content", in: "{\"cmd\":11,\"content\":\"a\x01b\"}", wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := AcquireDecoder()
			defer ReleaseDecoder(d)
			err := d.Decode([]byte(tt.in))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Decode(%q) err = %v, want %v", tt.in, err, tt.wantErr)
				}
				if d.Req.Command() != CmdUnknown {
					t.Errorf("Command() after failed Decode = %d, want CmdUnknown", d.Req.Command())
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.in, err)
			}
			if got := d.Req.Command(); got != tt.cmd {
				t.Errorf("Command() = %d, want %d", got, tt.cmd)
			}
			if tt.check != nil {
				tt.check(t, &d.Req)
			}
		})
	}
}

// TestDecodeResets checks that a reused Decoder carries nothing from one
// packet to the next.
func TestDecodeResets(t *testing.T) {
	var d Decoder
	if err := d.Decode([]byte(`{"cmd":11,"from":"a","to":"b","content":"x","token":"t"}`)); err != nil {
		t.Fatal(err)
	}
	if err := d.Decode([]byte(`{"cmd":13}`)); err != nil {
		t.Fatal(err)
	}
	if d.Req.From != "" || d.Req.To != "" || d.Req.Token != "" || d.Req.Content != nil {
		t.Errorf("fields survived a second Decode: %+v", d.Req)
	}
	if err := d.Decode([]byte(`[]`)); err == nil {
		t.Fatal("Decode([]) succeeded")
	}
	if d.Req.Cmd != "" {
		t.Errorf("Cmd survived a failed Decode: %q", d.Req.Cmd)
	}
}

func wantInt(t *testing.T, name string, v Int, want int64) {
	t.Helper()
	n, ok, err := ParseInt(v)
	if !ok || err != nil || n != want {
		t.Errorf("%s = %q (n=%d ok=%v err=%v), want %d", name, v, n, ok, err, want)
	}
}

func wantStr(t *testing.T, name, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

func TestAppendEnvelope(t *testing.T) {
	tests := []struct {
		name string
		code Code
		cmd  Cmd
		data string // "" means nil
		want string
	}{
		{"unknown command", CodeUnknownCmd, CmdUnknown, "",
			`{"code":10017,"command":0,"msg":"cmd failed! 未知的cmd命令!"}`},
		{"close ok", CodeCloseOK, CmdClose, "",
			`{"code":10021,"command":14,"msg":"close ok! 关闭成功"}`},
		{"login failed", CodeLoginFailed, CmdLoginResp, "",
			`{"code":10008,"command":6,"msg":"login failed ! 登录失败!"}`},
		{"with data", CodeJoinOK, CmdJoinResp, `{"group":"g","result":1}`,
			`{"code":10011,"command":8,"data":{"group":"g","result":1},"msg":"join group ok! 加入群组成功!"}`},
		{"success with array data", CodeSuccess, CmdGetUserResp, `[]`,
			`{"code":200,"command":18,"data":[],"msg":"success "}`},
		{"push", 0, CmdChat, `{"id":"x"}`,
			`{"command":11,"data":{"id":"x"}}`},
		{"push without data", 0, CmdChat, "",
			`{"command":11}`},
		{"bad message text escapes quotes", CodeBadMessage, CmdChatAck, "",
			`{"code":10002,"command":12,"msg":"send failed 消息发送失败,数据格式不正确,请参考:{'from':来源ID,'to':目标ID,'cmd':'消息命令码','createTime':消息创建时间(Long型),'msgType':Integer消息类型,'content':内容}"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var data []byte
			if tt.data != "" {
				data = []byte(tt.data)
			}
			got := AppendEnvelope(nil, tt.code, tt.cmd, data)
			if string(got) != tt.want {
				t.Fatalf("AppendEnvelope =\n%s\nwant\n%s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Fatalf("not valid JSON: %s", got)
			}
			// Appending keeps the prefix.
			pre := []byte("prefix")
			got = AppendEnvelope(pre, tt.code, tt.cmd, data)
			if string(got) != "prefix"+tt.want {
				t.Errorf("AppendEnvelope with prefix = %s", got)
			}
			assertKeyOrder(t, got[len(pre):])
		})
	}
}

// assertKeyOrder checks that the envelope's members are in the order code,
// command, data, msg (PROTOCOL §0) and that none is null.
func assertKeyOrder(t *testing.T, env []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(env))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("envelope does not start an object: %v %v", tok, err)
	}
	order := map[string]int{"code": 0, "command": 1, "data": 2, "msg": 3}
	last := -1
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		k := tok.(string)
		pos, ok := order[k]
		if !ok {
			t.Fatalf("unexpected key %q in %s", k, env)
		}
		if pos <= last {
			t.Fatalf("key %q out of order in %s", k, env)
		}
		last = pos
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if string(v) == "null" {
			t.Fatalf("key %q is null in %s", k, env)
		}
	}
}

func TestAppendHeartbeat(t *testing.T) {
	tests := []struct {
		name string
		now  int64
		want string
	}{
		{"typical", 1700000000123, `{"command":13,"data":{"createTime":1700000000123,"hbbyte":-128}}`},
		{"zero", 0, `{"command":13,"data":{"createTime":0,"hbbyte":-128}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendHeartbeat(nil, tt.now)
			if string(got) != tt.want {
				t.Fatalf("AppendHeartbeat = %s, want %s", got, tt.want)
			}
			got = AppendHeartbeat([]byte("x"), tt.now)
			if string(got) != "x"+tt.want {
				t.Fatalf("AppendHeartbeat with prefix = %s", got)
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"empty", "", `""`},
		{"plain", "hello", `"hello"`},
		{"chinese", "你好", `"你好"`},
		{"quote", `a"b`, `"a\"b"`},
		{"backslash", `a\b`, `"a\\b"`},
		{"newline", "a\nb", `"a\nb"`},
		{"carriage return", "a\rb", `"a\rb"`},
		{"tab", "a\tb", `"a\tb"`},
		{"nul", "a\x00b", `"a\u0000b"`},
		{"backspace", "\b", `"\u0008"`},
		{"form feed", "\f", `"\u000c"`},
		{"unit separator", "\x1f", `"\u001f"`},
		{"DEL passes", "\x7f", "\"\x7f\""},
		{"html passes", "<a&b>", `"<a&b>"`},
		{"invalid byte", "a\xffb", `"a\ufffdb"`},
		{"each invalid byte", "\xff\xfe", `"\ufffd\ufffd"`},
		{"truncated rune", "\xe4\xbd", `"\ufffd\ufffd"`},
		{"surrogate half", "\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},
		{"literal U+FFFD kept", "\ufffd", "\"\ufffd\""},
		{"line separator", "a\u2028b", `"a\u2028b"`},
		{"paragraph separator", "a\u2029b", `"a\u2029b"`},
		{"emoji", "😀", `"😀"`},
		{"mixed", "\"\\\n\u2028\xff你", `"\"\\\n\u2028\ufffd你"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendString(nil, tt.in)
			if string(got) != tt.want {
				t.Fatalf("AppendString(%q) = %s, want %s", tt.in, got, tt.want)
			}
			checkStringRoundTrip(t, tt.in, got)
		})
	}
}

// checkStringRoundTrip checks that enc, the encoding of s, is a valid JSON
// string that decodes to s with each invalid byte replaced by U+FFFD, and
// that it holds no raw U+2028/U+2029 (it must also be valid JavaScript).
func checkStringRoundTrip(t *testing.T, s string, enc []byte) {
	t.Helper()
	var back string
	if err := json.Unmarshal(enc, &back); err != nil {
		t.Fatalf("AppendString(%q) = %s: not a JSON string: %v", s, enc, err)
	}
	if want := replaceInvalid(s); back != want {
		t.Fatalf("round trip of %q = %q, want %q", s, back, want)
	}
	if !utf8.Valid(enc) {
		t.Fatalf("AppendString(%q) is not valid UTF-8: %q", s, enc)
	}
	if bytes.ContainsRune(enc, '\u2028') || bytes.ContainsRune(enc, '\u2029') {
		t.Fatalf("AppendString(%q) holds a raw line/paragraph separator: %q", s, enc)
	}
}

// replaceInvalid replaces every byte that does not start a valid rune with
// U+FFFD, as AppendString does.
func replaceInvalid(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		b.WriteRune(r) // RuneError for an invalid byte
		i += size
	}
	return b.String()
}

func TestAppendFrameHeader(t *testing.T) {
	lengths := []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 1 << 32}
	ops := []struct {
		name string
		op   byte
	}{
		{"text", OpText}, {"close", OpClose}, {"ping", OpPing}, {"pong", OpPong},
	}
	for _, op := range ops {
		for _, n := range lengths {
			var want bytes.Buffer
			if err := ws.WriteHeader(&want, ws.Header{Fin: true, OpCode: ws.OpCode(op.op), Length: int64(n)}); err != nil {
				t.Fatal(err)
			}
			got := AppendFrameHeader(nil, op.op, n)
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("%s len %d: AppendFrameHeader = % x, want % x", op.name, n, got, want.Bytes())
			}
			if len(got) > MaxFrameHeader {
				t.Errorf("%s len %d: header of %d bytes > MaxFrameHeader", op.name, n, len(got))
			}
		}
	}
}

func TestAppendFrame(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 70000} {
		payload := bytes.Repeat([]byte{'a'}, n)
		want, err := ws.CompileFrame(ws.NewTextFrame(payload))
		if err != nil {
			t.Fatal(err)
		}
		if got := AppendTextFrame(nil, payload); !bytes.Equal(got, want) {
			t.Errorf("AppendTextFrame(len %d) differs from gobwas/ws", n)
		}
		h, err := ws.ReadHeader(bytes.NewReader(want))
		if err != nil || h.Masked || !h.Fin || h.OpCode != ws.OpText {
			t.Errorf("len %d: header %+v err %v", n, h, err)
		}
	}
}

func TestAppendCloseFrame(t *testing.T) {
	long := strings.Repeat("r", 200)
	tests := []struct {
		name       string
		code       uint16
		reason     string
		wantReason string
	}{
		{"no reason", 1000, "", ""},
		{"reason", 1008, "login failed", "login failed"},
		{"max reason", 1009, long[:123], long[:123]},
		{"cut reason", 1009, long, long[:123]},
		{"utf-8 reason", 1000, "关闭", "关闭"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := ws.CompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(tt.code), tt.wantReason)))
			if err != nil {
				t.Fatal(err)
			}
			got := AppendCloseFrame(nil, tt.code, tt.reason)
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendCloseFrame = % x\nwant % x", got, want)
			}
			if len(got)-2 > 125 {
				t.Fatalf("close payload of %d bytes > 125", len(got)-2)
			}
		})
	}
}

// TestAppendCloseFrameCutsOnRuneBoundary: a close reason must be valid
// UTF-8 (RFC 6455 §5.5.1; a peer fails the connection with 1007 otherwise),
// so a reason cut to fit must not end inside a multi-byte rune.
func TestAppendCloseFrameCutsOnRuneBoundary(t *testing.T) {
	reason := strings.Repeat("a", 122) + "é" // 124 bytes; byte 123 is inside é
	got := AppendCloseFrame(nil, 1000, reason)
	if len(got)-2 > 125 {
		t.Fatalf("close payload of %d bytes > 125", len(got)-2)
	}
	if r := got[4:]; !utf8.Valid(r) {
		t.Fatalf("reason cut inside a rune: %q", r)
	}
}

// statusTable is PROTOCOL.md §6, copied by hand: it is the contract.
var statusTable = []struct {
	code Code
	text string
}{
	{200, "success "},
	{10000, "ok 发送成功"},
	{10001, "offline 用户不在线"},
	{10002, "send failed 消息发送失败,数据格式不正确,请参考:{'from':来源ID,'to':目标ID,'cmd':'消息命令码','createTime':消息创建时间(Long型),'msgType':Integer消息类型,'content':内容}"},
	{10004, "get user failed ! 获取用户信息失败!"},
	{10007, "ok 登录成功!"},
	{10008, "login failed ! 登录失败!"},
	{10009, "ok 鉴权成功!"},
	{10011, "join group ok! 加入群组成功!"},
	{10012, "join group failed! 加入群组失败!"},
	{10015, "get user message failed! 获取用户消息失败!"},
	{10016, "get user message ok! 获取离线消息成功!"},
	{10017, "cmd failed! 未知的cmd命令!"},
	{10018, "get user message ok! 获取历史消息成功!"},
	{10020, "Invalid verification! 不合法校验"},
	{10021, "close ok! 关闭成功"},
	{10022, "ok! 拉取离线消息成功!"},
	{10023, "receiver not found 接收者不存在"},
	{10024, "forbidden 无权操作"},
	{10025, "recall ok 撤回成功"},
	{10026, "recall failed 撤回失败"},
	{10027, "exit group ok 退出群组成功"},
	{10028, "too many requests 请求过于频繁"},
	{10029, "bad request 请求参数错误"},
	{10030, "read ok 已读成功"},
	{10032, "sync ok 同步成功"},
	{10033, "recent ok 获取最近会话成功"},
}

func TestStatusText(t *testing.T) {
	for _, tt := range statusTable {
		if got := tt.code.Text(); got != tt.text {
			t.Errorf("Code(%d).Text() = %q, want %q", tt.code, got, tt.text)
		}
		if !tt.code.Known() {
			t.Errorf("Code(%d).Known() = false", tt.code)
		}
		env := AppendEnvelope(nil, tt.code, CmdUnknown, nil)
		var v struct {
			Msg string `json:"msg"`
		}
		if err := json.Unmarshal(env, &v); err != nil || v.Msg != tt.text {
			t.Errorf("Code(%d): envelope msg = %q (err %v), want %q", tt.code, v.Msg, err, tt.text)
		}
	}
	if len(statusText) != len(statusTable) {
		t.Errorf("statusText has %d codes, PROTOCOL §6 has %d", len(statusText), len(statusTable))
	}
	for _, c := range []Code{0, 1, 400, 500, 10003, 10099} {
		if c.Known() || c.Text() != "" {
			t.Errorf("Code(%d) is known (%q); not in PROTOCOL §6", c, c.Text())
		}
	}
}

// FrameCode reads the status code of a reply frame, whatever its header's
// length, and 0 where there is none (PROTOCOL §6: every reply but the
// heartbeat's carries one).
func TestFrameCode(t *testing.T) {
	big := make([]byte, 70000)
	for i := range big {
		big[i] = 'x'
	}
	for _, tc := range []struct {
		name   string
		frames []byte
		want   Code
	}{
		{"ack", AppendTextFrame(nil, AppendEnvelope(nil, CodeSent, CmdChatAck, nil)), CodeSent},
		{"200", AppendTextFrame(nil, []byte(`{"code":200,"msg":"success"}`)), CodeSuccess},
		{"then more frames", append(AppendTextFrame(nil, AppendEnvelope(nil, CodeBadRequest, CmdSyncResp, nil)), AppendTextFrame(nil, AppendEnvelope(nil, CodeSent, CmdChatAck, nil))...), CodeBadRequest},
		{"16-bit length", AppendTextFrame(nil, AppendEnvelope(nil, CodeHistoryOK, CmdMessageResp, []byte(`"`+string(big[:1000])+`"`))), CodeHistoryOK},
		{"64-bit length", AppendTextFrame(nil, AppendEnvelope(nil, CodeOfflineMsgOK, CmdMessageResp, []byte(`"`+string(big)+`"`))), CodeOfflineMsgOK},
		{"heartbeat", AppendTextFrame(nil, []byte(`{"command":13,"data":{}}`)), 0},
		{"close", AppendCloseFrame(nil, 1008, "slow"), 0},
		{"empty", nil, 0},
		{"cut header", []byte{0x81, 126, 1}, 0},
		{"cut code", AppendTextFrame(nil, []byte(`{"code":`)), 0},
		{"too large", AppendTextFrame(nil, []byte(`{"code":9999999999}`)), 0},
	} {
		if got := FrameCode(tc.frames); got != tc.want {
			t.Errorf("%s: FrameCode = %d, want %d", tc.name, got, tc.want)
		}
	}
}
