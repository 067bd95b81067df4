import CPosix
import Glibc

// The only place libc is called for what this module covers. Each shim
// returns the C result unchanged; debug builds may force a failure first.

@usableFromInline func system_open(_ path: UnsafePointer<CChar>, _ flags: CInt, _ mode: mode_t) -> CInt {
    if let forced = mockedFailure("open") { return forced }
    return Glibc.open(path, flags, mode)
}
@usableFromInline func system_close(_ fd: CInt) -> CInt {
    if let forced = mockedFailure("close") { return forced }
    return Glibc.close(fd)
}
@usableFromInline func system_read(_ fd: CInt, _ buf: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    if let forced = mockedFailure("read") { return Int(forced) }
    return Glibc.read(fd, buf, count)
}
@usableFromInline func system_pread(_ fd: CInt, _ buf: UnsafeMutableRawPointer?, _ count: Int, _ offset: off_t) -> Int {
    if let forced = mockedFailure("pread") { return Int(forced) }
    return Glibc.pread(fd, buf, count, offset)
}
@usableFromInline func system_write(_ fd: CInt, _ buf: UnsafeRawPointer?, _ count: Int) -> Int {
    if let forced = mockedFailure("write") { return Int(forced) }
    return Glibc.write(fd, buf, count)
}
@usableFromInline func system_ftruncate(_ fd: CInt, _ length: off_t) -> CInt {
    if let forced = mockedFailure("ftruncate") { return forced }
    return Glibc.ftruncate(fd, length)
}
@usableFromInline func system_fstat(_ fd: CInt, _ buf: UnsafeMutablePointer<stat>) -> CInt {
    if let forced = mockedFailure("fstat") { return forced }
    return Glibc.fstat(fd, buf)
}
@usableFromInline func system_lstat(_ path: UnsafePointer<CChar>, _ buf: UnsafeMutablePointer<stat>) -> CInt {
    if let forced = mockedFailure("lstat") { return forced }
    return Glibc.lstat(path, buf)
}
@usableFromInline func system_fchmod(_ fd: CInt, _ mode: mode_t) -> CInt {
    if let forced = mockedFailure("fchmod") { return forced }
    return Glibc.fchmod(fd, mode)
}
@usableFromInline func system_mkdir(_ path: UnsafePointer<CChar>, _ mode: mode_t) -> CInt {
    if let forced = mockedFailure("mkdir") { return forced }
    return Glibc.mkdir(path, mode)
}
@usableFromInline func system_unlink(_ path: UnsafePointer<CChar>) -> CInt {
    if let forced = mockedFailure("unlink") { return forced }
    return Glibc.unlink(path)
}
@usableFromInline func system_rmdir(_ path: UnsafePointer<CChar>) -> CInt {
    if let forced = mockedFailure("rmdir") { return forced }
    return Glibc.rmdir(path)
}
@usableFromInline func system_mmap(_ addr: UnsafeMutableRawPointer?, _ length: Int, _ prot: CInt, _ flags: CInt, _ fd: CInt, _ offset: off_t) -> UnsafeMutableRawPointer? {
    if mockedFailure("mmap") != nil { return MAP_FAILED }
    return Glibc.mmap(addr, length, prot, flags, fd, offset)
}
@usableFromInline func system_munmap(_ addr: UnsafeMutableRawPointer, _ length: Int) -> CInt {
    if let forced = mockedFailure("munmap") { return forced }
    return Glibc.munmap(addr, length)
}
@usableFromInline func system_madvise(_ addr: UnsafeMutableRawPointer, _ length: Int, _ advice: CInt) -> CInt {
    if let forced = mockedFailure("madvise") { return forced }
    return Glibc.madvise(addr, length, advice)
}
@usableFromInline func system_mprotect(_ addr: UnsafeMutableRawPointer, _ length: Int, _ prot: CInt) -> CInt {
    if let forced = mockedFailure("mprotect") { return forced }
    return Glibc.mprotect(addr, length, prot)
}
@usableFromInline func system_kill(_ pid: pid_t, _ signal: CInt) -> CInt {
    if let forced = mockedFailure("kill") { return forced }
    return Glibc.kill(pid, signal)
}
@usableFromInline func system_waitpid(_ pid: pid_t, _ status: UnsafeMutablePointer<CInt>, _ options: CInt) -> pid_t {
    if let forced = mockedFailure("waitpid") { return forced }
    return Glibc.waitpid(pid, status, options)
}
@usableFromInline func system_pipe2(_ fds: UnsafeMutablePointer<CInt>, _ flags: CInt) -> CInt {
    if let forced = mockedFailure("pipe2") { return forced }
    return fks_pipe2(fds, flags)
}
@usableFromInline func system_poll(_ fds: UnsafeMutablePointer<pollfd>?, _ count: nfds_t, _ timeout: CInt) -> CInt {
    if let forced = mockedFailure("poll") { return forced }
    return Glibc.poll(fds, count, timeout)
}
@usableFromInline func system_dup2(_ fd: CInt, _ target: CInt) -> CInt {
    if let forced = mockedFailure("dup2") { return forced }
    return Glibc.dup2(fd, target)
}

@usableFromInline func system_fcntl(_ fd: CInt, _ command: CInt) -> CInt {
    if let forced = mockedFailure("fcntl") { return forced }
    return Glibc.fcntl(fd, command)
}
@usableFromInline func system_fcntl(_ fd: CInt, _ command: CInt, _ value: CInt) -> CInt {
    if let forced = mockedFailure("fcntl") { return forced }
    return Glibc.fcntl(fd, command, value)
}
@usableFromInline func system_readlink(_ path: UnsafePointer<CChar>, _ buf: UnsafeMutablePointer<CChar>, _ size: Int) -> Int {
    if let forced = mockedFailure("readlink") { return Int(forced) }
    return Glibc.readlink(path, buf, size)
}
@usableFromInline func system_symlink(_ target: UnsafePointer<CChar>, _ path: UnsafePointer<CChar>) -> CInt {
    if let forced = mockedFailure("symlink") { return forced }
    return Glibc.symlink(target, path)
}
@usableFromInline func system_mkdtemp(_ template: UnsafeMutablePointer<CChar>) -> UnsafeMutablePointer<CChar>? {
    if mockedFailure("mkdtemp") != nil { return nil }
    return Glibc.mkdtemp(template)
}
@usableFromInline func system_opendir(_ path: UnsafePointer<CChar>) -> OpaquePointer? {
    if mockedFailure("opendir") != nil { return nil }
    return Glibc.opendir(path)
}
/// nil with `errno` unchanged at the end of the directory, nil with `errno` set on failure.
@usableFromInline func system_readdir(_ dir: OpaquePointer) -> UnsafeMutablePointer<dirent>? {
    if mockedFailure("readdir") != nil { return nil }
    return Glibc.readdir(dir)
}
@usableFromInline func system_closedir(_ dir: OpaquePointer) -> CInt {
    if let forced = mockedFailure("closedir") { return forced }
    return Glibc.closedir(dir)
}

// MARK: sockets

@usableFromInline func system_socket(_ domain: CInt, _ type: CInt, _ proto: CInt) -> CInt {
    if let forced = mockedFailure("socket") { return forced }
    return Glibc.socket(domain, type, proto)
}
@usableFromInline func system_socketpair(_ domain: CInt, _ type: CInt, _ proto: CInt, _ fds: UnsafeMutablePointer<CInt>) -> CInt {
    if let forced = mockedFailure("socketpair") { return forced }
    return Glibc.socketpair(domain, type, proto, fds)
}
@usableFromInline func system_bind(_ fd: CInt, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> CInt {
    if let forced = mockedFailure("bind") { return forced }
    return Glibc.bind(fd, address, length)
}
@usableFromInline func system_listen(_ fd: CInt, _ backlog: CInt) -> CInt {
    if let forced = mockedFailure("listen") { return forced }
    return Glibc.listen(fd, backlog)
}
@usableFromInline func system_accept4(
    _ fd: CInt, _ address: UnsafeMutablePointer<sockaddr>?, _ length: UnsafeMutablePointer<socklen_t>?, _ flags: CInt
) -> CInt {
    if let forced = mockedFailure("accept4") { return forced }
    return fks_accept4(fd, address, length, flags)
}
@usableFromInline func system_connect(_ fd: CInt, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> CInt {
    if let forced = mockedFailure("connect") { return forced }
    return Glibc.connect(fd, address, length)
}
@usableFromInline func system_setsockopt(
    _ fd: CInt, _ level: CInt, _ name: CInt, _ value: UnsafeRawPointer, _ length: socklen_t
) -> CInt {
    if let forced = mockedFailure("setsockopt") { return forced }
    return Glibc.setsockopt(fd, level, name, value, length)
}
@usableFromInline func system_getsockopt(
    _ fd: CInt, _ level: CInt, _ name: CInt, _ value: UnsafeMutableRawPointer, _ length: UnsafeMutablePointer<socklen_t>
) -> CInt {
    if let forced = mockedFailure("getsockopt") { return forced }
    return Glibc.getsockopt(fd, level, name, value, length)
}
@usableFromInline func system_getsockname(
    _ fd: CInt, _ address: UnsafeMutablePointer<sockaddr>, _ length: UnsafeMutablePointer<socklen_t>
) -> CInt {
    if let forced = mockedFailure("getsockname") { return forced }
    return Glibc.getsockname(fd, address, length)
}
@usableFromInline func system_shutdown(_ fd: CInt, _ how: CInt) -> CInt {
    if let forced = mockedFailure("shutdown") { return forced }
    return Glibc.shutdown(fd, how)
}
@usableFromInline func system_send(_ fd: CInt, _ buf: UnsafeRawPointer?, _ count: Int, _ flags: CInt) -> Int {
    if let forced = mockedFailure("send") { return Int(forced) }
    return Glibc.send(fd, buf, count, flags)
}
@usableFromInline func system_recv(_ fd: CInt, _ buf: UnsafeMutableRawPointer?, _ count: Int, _ flags: CInt) -> Int {
    if let forced = mockedFailure("recv") { return Int(forced) }
    return Glibc.recv(fd, buf, count, flags)
}
/// SO_PEERCRED through the C shim (`struct ucred` needs _GNU_SOURCE).
@usableFromInline func system_peer_credentials(
    _ fd: CInt, _ pid: UnsafeMutablePointer<pid_t>, _ uid: UnsafeMutablePointer<uid_t>, _ gid: UnsafeMutablePointer<gid_t>
) -> CInt {
    if let forced = mockedFailure("getsockopt") { return forced }
    return fks_peer_credentials(fd, pid, uid, gid)
}

// MARK: eventfd, pidfd

@usableFromInline func system_eventfd(_ initialValue: CUnsignedInt, _ flags: CInt) -> CInt {
    if let forced = mockedFailure("eventfd") { return forced }
    return fks_eventfd(initialValue, flags)
}
@usableFromInline func system_pidfd_open(_ pid: pid_t, _ flags: CUnsignedInt) -> CInt {
    if let forced = mockedFailure("pidfd_open") { return forced }
    return fks_pidfd_open(pid, flags)
}

// MARK: signals and processes

@usableFromInline func system_sigaction(_ signal: CInt, _ handler: (@convention(c) (CInt) -> Void)?, _ flags: CInt) -> CInt {
    if let forced = mockedFailure("sigaction") { return forced }
    return fks_sigaction(signal, handler, flags)
}
/// Returns an error number (not -1 and errno), like pthread functions.
@usableFromInline func system_pthread_sigmask(
    _ how: CInt, _ set: UnsafePointer<sigset_t>?, _ old: UnsafeMutablePointer<sigset_t>?
) -> CInt {
    if mockedFailure("pthread_sigmask") != nil { return fks_errno() }
    return Glibc.pthread_sigmask(how, set, old)
}
@usableFromInline func system_raise(_ signal: CInt) -> CInt {
    if let forced = mockedFailure("raise") { return forced }
    return Glibc.raise(signal)
}
/// Returns an error number (not -1 and errno): with glibc's vfork-style
/// spawn, a failed exec in the child is reported here too.
@usableFromInline func system_posix_spawn(
    _ pid: UnsafeMutablePointer<pid_t>,
    _ path: UnsafePointer<CChar>,
    _ fileActions: UnsafePointer<posix_spawn_file_actions_t>,
    _ attributes: UnsafePointer<posix_spawnattr_t>,
    _ argv: UnsafePointer<UnsafeMutablePointer<CChar>?>,
    _ envp: UnsafePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
    if mockedFailure("posix_spawn") != nil { return fks_errno() }
    return Glibc.posix_spawn(pid, path, fileActions, attributes, argv, envp)
}
