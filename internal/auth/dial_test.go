package auth

import (
	"context"
	"net"
)

type contextLike = context.Context
type netConn = net.Conn

var dialer net.Dialer
