package logtest

import "testing"

func TestDuplicateKey_FindsTopLevelKeysTwice(t *testing.T) {
	for _, tc := range []struct{ name, line, want string }{
		{"one msg", `{"level":"WARN","msg":"x","library":"gnet"}` + "\n", ""},
		{"msg twice", `{"level":"WARN","msg":"gnet","msg":"x"}`, "msg"},
		{"component twice", `{"msg":"x","component":"engine","component":"gnet"}`, "component"},
		{"nested keys may repeat", `{"msg":"x","a":{"msg":1,"b":2},"b":3}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := duplicateKey([]byte(tc.line)); got != tc.want {
				t.Fatalf("duplicateKey(%s) = %q, want %q", tc.line, got, tc.want)
			}
		})
	}
}
