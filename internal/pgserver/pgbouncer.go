package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// StartPgBouncer starts Debian's pgbouncer in transaction pooling mode in
// front of target (a server this process may reach as a trusted user), on a
// free loopback port, and returns it as a Server whose URL connects through
// it. Stop ends the pooler only. It needs the pgbouncer binary on PATH or
// in /usr/sbin (Debian: apt-get install pgbouncer).
func StartPgBouncer(ctx context.Context, target *Server) (*Server, error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr != nil {
			return nil, errors.New("pgbouncer not found on PATH nor in /usr/sbin (Debian: apt-get install pgbouncer)")
		}
		bin = "/usr/sbin/pgbouncer"
	}
	u, err := url.Parse(target.URL)
	if err != nil {
		return nil, err
	}
	cred, err := credential() // pgbouncer refuses to run as root
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "outbox-pgbouncer-")
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	user := u.User.Username()
	db := u.Path[1:]
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%s user=%s dbname=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
max_client_conn = 500
default_pool_size = 40
ignore_startup_parameters = extra_float_digits,search_path,options
logfile = %s
pidfile = %s
`, db, u.Hostname(), u.Port(), user, db, port, filepath.Join(dir, "users.txt"),
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	if err := os.WriteFile(filepath.Join(dir, "users.txt"), []byte(strconv.Quote(user)+` ""`+"\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, filepath.Join(dir, "pgbouncer.ini"))
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pgbouncer: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = cmd.Process.Kill()
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			return nil, fmt.Errorf("pgbouncer did not listen on %s: %s", addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	through := *u
	through.Host = addr
	q := through.Query()
	// Transaction pooling: no server-side prepared statements across
	// transactions (pgbouncer 1.18 cannot carry them).
	q.Set("default_query_exec_mode", "exec")
	through.RawQuery = q.Encode()
	return &Server{URL: through.String(), Source: "pgbouncer", stop: func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_, err := cmd.Process.Wait()
		_ = os.RemoveAll(dir)
		return err
	}}, nil
}
