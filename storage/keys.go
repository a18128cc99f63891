package storage

import "encoding/binary"

// Key prefixes; see doc.go for the layout.
const (
	prefixUser    = "u|"
	prefixUserEnd = "u}" // '|'+1: the exclusive upper bound of u|
	prefixUserID  = "i|"
	prefixToken   = "t|"
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
