package codec

import "slices"

// Code is a status code carried in the "code" member of a reply.
type Code uint16

// Status codes of PROTOCOL §6.
const (
	CodeSuccess         Code = 200
	CodeSent            Code = 10000
	CodeOffline         Code = 10001
	CodeBadMessage      Code = 10002
	CodeGetUserFailed   Code = 10004
	CodeLoginOK         Code = 10007
	CodeLoginFailed     Code = 10008
	CodeAuthOK          Code = 10009
	CodeJoinOK          Code = 10011
	CodeJoinFailed      Code = 10012
	CodeGetMsgFailed    Code = 10015
	CodeOfflineMsgOK    Code = 10016
	CodeUnknownCmd      Code = 10017
	CodeHistoryOK       Code = 10018
	CodeInvalid         Code = 10020
	CodeCloseOK         Code = 10021
	CodePullOfflineOK   Code = 10022
	CodeReceiverMissing Code = 10023
	CodeForbidden       Code = 10024
	CodeRecallOK        Code = 10025
	CodeRecallFailed    Code = 10026
	CodeExitOK          Code = 10027
	CodeTooManyRequests Code = 10028
	CodeBadRequest      Code = 10029 // §7: a malformed or forbidden cmd 21-33
	CodeReadOK          Code = 10030
	CodeSyncOK          Code = 10032
	CodeRecentOK        Code = 10033
)

// statusText is the one table of reply messages. The texts are part of the
// contract and compared byte for byte by legacy clients: never reword them.
var statusText = map[Code]string{
	CodeSuccess:         "success ",
	CodeSent:            "ok 发送成功",
	CodeOffline:         "offline 用户不在线",
	CodeBadMessage:      "send failed 消息发送失败,数据格式不正确,请参考:{'from':来源ID,'to':目标ID,'cmd':'消息命令码','createTime':消息创建时间(Long型),'msgType':Integer消息类型,'content':内容}",
	CodeGetUserFailed:   "get user failed ! 获取用户信息失败!",
	CodeLoginOK:         "ok 登录成功!",
	CodeLoginFailed:     "login failed ! 登录失败!",
	CodeAuthOK:          "ok 鉴权成功!",
	CodeJoinOK:          "join group ok! 加入群组成功!",
	CodeJoinFailed:      "join group failed! 加入群组失败!",
	CodeGetMsgFailed:    "get user message failed! 获取用户消息失败!",
	CodeOfflineMsgOK:    "get user message ok! 获取离线消息成功!",
	CodeUnknownCmd:      "cmd failed! 未知的cmd命令!",
	CodeHistoryOK:       "get user message ok! 获取历史消息成功!",
	CodeInvalid:         "Invalid verification! 不合法校验",
	CodeCloseOK:         "close ok! 关闭成功",
	CodePullOfflineOK:   "ok! 拉取离线消息成功!",
	CodeReceiverMissing: "receiver not found 接收者不存在",
	CodeForbidden:       "forbidden 无权操作",
	CodeRecallOK:        "recall ok 撤回成功",
	CodeRecallFailed:    "recall failed 撤回失败",
	CodeExitOK:          "exit group ok 退出群组成功",
	CodeTooManyRequests: "too many requests 请求过于频繁",
	CodeBadRequest:      "bad request 请求参数错误",
	CodeReadOK:          "read ok 已读成功",
	CodeSyncOK:          "sync ok 同步成功",
	CodeRecentOK:        "recent ok 获取最近会话成功",
}

// Text returns the exact message for c, or "" for a code not in the table.
func (c Code) Text() string { return statusText[c] }

// Known reports whether c is in the status table.
func (c Code) Known() bool { _, ok := statusText[c]; return ok }

// Codes returns every code of the status table, ascending: the rows of
// PROTOCOL §6, each with its exact message in Text. The slice is new on
// every call.
func Codes() []Code {
	cs := make([]Code, 0, len(statusText))
	for c := range statusText {
		cs = append(cs, c)
	}
	slices.Sort(cs)
	return cs
}
