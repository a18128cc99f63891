package pebble

import "encoding/binary"

// Key prefixes; see doc.go for the layout.
const (
	prefixUser      = "u|"
	prefixUserEnd   = "u}" // '|'+1: the exclusive upper bound of u|
	prefixUserID    = "i|"
	prefixToken     = "t|"
	prefixTokenEnd  = "t}" // the exclusive upper bound of t|
	prefixTokenList = "K|" // K|uid(8)|terminal -> the newest tokens of a (user, terminal)
	prefixRevoked   = "R|" // R|uid(8) -> ms of the user's last logout
)

func keyUser(uid uint64) []byte {
	k := make([]byte, 0, len(prefixUser)+8)
	k = append(k, prefixUser...)
	return binary.BigEndian.AppendUint64(k, uid)
}

func keyUserID(id string) []byte {
	k := make([]byte, 0, len(prefixUserID)+len(id))
	k = append(k, prefixUserID...)
	return append(k, id...)
}

func keyToken(token string) []byte {
	k := make([]byte, 0, len(prefixToken)+len(token))
	k = append(k, prefixToken...)
	return append(k, token...)
}

// keyTokenList is K|uid|terminal. The uid is fixed width, so the lists of
// one user are the range [keyTokenList(uid, ""), keyTokenList(uid+1, "")).
func keyTokenList(uid uint64, terminal string) []byte {
	k := make([]byte, 0, len(prefixTokenList)+8+len(terminal))
	k = append(k, prefixTokenList...)
	k = binary.BigEndian.AppendUint64(k, uid)
	return append(k, terminal...)
}

func keyRevoked(uid uint64) []byte {
	k := make([]byte, 0, len(prefixRevoked)+8)
	k = append(k, prefixRevoked...)
	return binary.BigEndian.AppendUint64(k, uid)
}
