package codec

// Cmd is a command code: the "cmd" of a request or the "command" of a reply.
type Cmd uint8

// Command codes of PROTOCOL §3.
const (
	CmdUnknown     Cmd = 0
	CmdAuth        Cmd = 3
	CmdAuthResp    Cmd = 4
	CmdLogin       Cmd = 5
	CmdLoginResp   Cmd = 6
	CmdJoinGroup   Cmd = 7
	CmdJoinResp    Cmd = 8
	CmdJoinNotify  Cmd = 9
	CmdExitNotify  Cmd = 10
	CmdChat        Cmd = 11
	CmdChatAck     Cmd = 12
	CmdHeartbeat   Cmd = 13
	CmdClose       Cmd = 14
	CmdRecall      Cmd = 15
	CmdRecallResp  Cmd = 16
	CmdGetUser     Cmd = 17
	CmdGetUserResp Cmd = 18
	CmdGetMessage  Cmd = 19
	CmdMessageResp Cmd = 20
	// Reliable delivery (PROTOCOL §7).
	CmdAck         Cmd = 21 // receipt ack, §7.2
	CmdAckResp     Cmd = 22 // its failures only
	CmdSync        Cmd = 23 // §7.3
	CmdSyncResp    Cmd = 24
	CmdRecent      Cmd = 25 // recent conversations, §7.4
	CmdRecentResp  Cmd = 26
	CmdRead        Cmd = 27 // §7.5
	CmdReadResp    Cmd = 28 // the reply and the read-receipt event
	CmdExitGroup   Cmd = 29 // leave, §5 (was 21 before §7)
	CmdExitResp    Cmd = 30
	CmdTyping      Cmd = 33 // §7.6
	CmdTypingEvent Cmd = 34
)

// MaxCmd bounds the dispatch table: a decoded cmd at or above it is unknown.
const MaxCmd = 64
