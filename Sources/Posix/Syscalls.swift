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
@usableFromInline func system_poll(_ fds: UnsafeMutablePointer<pollfd>, _ count: nfds_t, _ timeout: CInt) -> CInt {
    if let forced = mockedFailure("poll") { return forced }
    return Glibc.poll(fds, count, timeout)
}
@usableFromInline func system_dup2(_ fd: CInt, _ target: CInt) -> CInt {
    if let forced = mockedFailure("dup2") { return forced }
    return Glibc.dup2(fd, target)
}
