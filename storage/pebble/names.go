package pebble

import "github.com/imgate/imgate/storage"

// The domain's values, named here as the code of this package always has.
type (
	Message       = storage.Message
	Contact       = storage.Contact
	ContactCounts = storage.ContactCounts
	User          = storage.User
	Registration  = storage.Registration
	TokenInfo     = storage.TokenInfo
	AppendOptions = storage.AppendOptions
	AppendResult  = storage.AppendResult
	Appended      = storage.Appended
	AppendedFunc  = storage.AppendedFunc
	TouchOptions  = storage.TouchOptions
	HistoryQuery  = storage.HistoryQuery
	OfflinePage   = storage.OfflinePage
	QueueQuery    = storage.QueueQuery
	QueuePage     = storage.QueuePage
	Removal       = storage.Removal
	ReadResult    = storage.ReadResult
	CommitStats   = storage.CommitStats
)

const (
	ChatGroup            = storage.ChatGroup
	ChatPrivate          = storage.ChatPrivate
	UserVisitor          = storage.UserVisitor
	UserAgent            = storage.UserAgent
	UserConsultant       = storage.UserConsultant
	JoinOK               = storage.JoinOK
	JoinFull             = storage.JoinFull
	MaxTokensPerTerminal = storage.MaxTokensPerTerminal
	groupUnreadWalk      = storage.GroupUnreadWalk
)

var (
	ErrNotFound     = storage.ErrNotFound
	ErrTokenTaken   = storage.ErrTokenTaken
	ErrTokenExpired = storage.ErrTokenExpired
	ErrTokenRevoked = storage.ErrTokenRevoked
	ErrClosed       = storage.ErrClosed
	ErrOverloaded   = storage.ErrOverloaded
	ErrTooLate      = storage.ErrTooLate
	ErrRecalled     = storage.ErrRecalled
	MessageSize     = storage.MessageSize
)

var _ storage.Store = (*DB)(nil)
