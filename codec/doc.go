// Package codec turns WebSocket payloads into requests and replies into
// bytes. It owns the wire vocabulary of imgate: command codes, status codes
// and their exact messages, the lenient request decoder and the append-style
// envelope and frame encoders. It does no I/O and starts no goroutines.
//
// # Wire table
//
// Every client packet is a UTF-8 JSON object in one WebSocket TEXT message.
// Numeric fields accept a number or a numeric string; "userid" is accepted
// for "userId" and "group_id" for "groupId"; unknown fields are ignored.
//
//	cmd  name          reply  body (request)
//	 3   auth           4     -                       -> 10009
//	 5   login          6     token                   -> 10007 | 10008
//	 7   join group     8     groupId
//	11   chat          12/11  from,to,chatType,msgType,content,extras,id
//	13   heartbeat     13     hbbyte (ignored)        -> data{createTime,hbbyte:-128}
//	14   close         14     userid (optional)       -> 10021, close 1000 | 10024
//	15   recall        16     id
//	17   get user      18     userId,type,extras
//	19   get messages  20     userId,type,fromUserId,groupId,beginTime,endTime,offset,count
//	21   receipt ack   22     peer|groupId,seq        -> no reply; 10029 on failure
//	23   sync          24     convs[{peer|groupId,afterSeq}],count -> 10032 | 10029
//	25   recent        26     count,beforeTime        -> 10033 | 10029
//	27   read          28     peer|groupId,seq        -> 10030 | 10029; 28 to the peer too
//	29   exit group    30     groupId                 -> 10027 (was 21 before the §7 commands)
//	33   typing        34     to,state                -> 34 to the peer, no reply; 10029 on failure
//	 ?   anything else  0                             -> 10017
//
// docs/PROTOCOL.md §3 and §6 are the users' copy of these tables;
// TestProtocolReference_* hold it to CmdX, Codes and the router.
//
// Every server packet is an envelope {"code","command","data","msg"}: keys in
// that order, absent members omitted, never null. msg is derived from code by
// the table in status.go, the only place the texts live.
//
// # Flow
//
// The client upgrades with ?token=T. The first frame the server sends is the
// login result (command 6, 10007 or 10008); after 10008 the server closes
// with 1008. From then on the client sends commands and the server answers
// and pushes (command 11 chat, 9/10 group notices, 16 recalls).
//
// # Versioning
//
// The protocol is frozen by the deployed J-IM clients: changes are additive
// only (new optional fields, new commands). A change that a legacy client
// could observe needs a new command code, never a changed meaning.
//
// # Status code ranges
//
// 200 and 400/500 belong to the HTTP API; 10000-10099 are the WebSocket
// replies of the compat table, where 10023 and above are extensions.
package codec
