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
	CmdExitGroup   Cmd = 21
	CmdExitResp    Cmd = 22
)

// MaxCmd bounds the dispatch table: a decoded cmd at or above it is unknown.
const MaxCmd = 32
