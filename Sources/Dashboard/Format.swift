/// Number and duration formatting without Foundation (the same text in
/// every locale, so reference renders are stable).
public enum Format {
    /// `12,345`
    public static func count<T: BinaryInteger>(_ value: T) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (n, c) in digits.enumerated() {
            if n > 0 && (digits.count - n) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (value < 0 ? "-" : "") + out
    }

    /// A duration for humans: `850us`, `12.3ms`, `1.25s`, `3m05s`.
    public static func duration(_ ns: UInt64, unicode: Bool = false) -> String {
        let micro = unicode ? "µs" : "us"
        if ns < 1_000_000 { return "\(ns / 1000)\(micro)" }
        if ns < 10_000_000 { return decimal(ns, unit: 1_000_000, places: 1) + "ms" }
        if ns < 1_000_000_000 { return "\(ns / 1_000_000)ms" }
        if ns < 10_000_000_000 { return decimal(ns, unit: 1_000_000_000, places: 2) + "s" }
        if ns < 60_000_000_000 { return decimal(ns, unit: 1_000_000_000, places: 1) + "s" }
        let seconds = ns / 1_000_000_000
        let rest = seconds % 60
        return "\(seconds / 60)m\(rest < 10 ? "0" : "")\(rest)s"
    }

    /// A duration given in microseconds (saturating: a hostile value cannot trap).
    public static func micros(_ us: UInt64, unicode: Bool = false) -> String {
        let (ns, overflow) = us.multipliedReportingOverflow(by: 1000)
        return duration(overflow ? .max : ns, unicode: unicode)
    }

    /// `value / unit` with `places` decimals, truncated.
    public static func decimal(_ value: UInt64, unit: UInt64, places: Int) -> String {
        var scale: UInt64 = 1
        for _ in 0..<places { scale *= 10 }
        let scaled = value / (unit / scale)
        let whole = scaled / scale, fraction = String(scaled % scale)
        guard places > 0 else { return String(whole) }
        return "\(whole).\(String(repeating: "0", count: places - fraction.count))\(fraction)"
    }

    /// `900B`, `3.3KB`, `12MB`
    public static func bytes(_ value: UInt64) -> String {
        if value < 1024 { return "\(value)B" }
        if value < 10 * 1024 { return decimal(value * 1000 / 1024, unit: 1000, places: 1) + "KB" }
        if value < 1024 * 1024 { return "\(value / 1024)KB" }
        return "\(value >> 20).\(((value & 0xFFFFF) * 10) >> 20)MB"
    }

    /// An axis label: seconds since the ring began, with as many decimals
    /// as the tick interval needs (`+12s`, `+1.5s`, `+0.250s`).
    public static func axisLabel(_ offset: UInt64, interval: UInt64) -> String {
        let places = interval >= 1_000_000_000 ? 0 : interval >= 100_000_000 ? 1 : interval >= 10_000_000 ? 2 : interval >= 1_000_000 ? 3 : 4
        return "+" + decimal(offset, unit: 1_000_000_000, places: places) + "s"
    }

    /// `text` padded with blanks (or cut) to exactly `width` characters.
    public static func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
        let count = text.unicodeScalars.count
        if count >= width { return String(String.UnicodeScalarView(text.unicodeScalars.prefix(width))) }
        let fill = String(repeating: " ", count: width - count)
        return right ? fill + text : text + fill
    }
}
