import Foundation

/// The three timestamp spellings the S3 subset uses, converted without `DateFormatter`
/// (which is neither cheap nor obviously thread-safe) and without any locale or time zone:
/// everything is UTC.
///
/// - `amz`: `20130524T000000Z`, the `x-amz-date` header and SigV4's request time.
/// - `iso8601`: `2013-05-24T00:00:00.000Z`, `LastModified` in listings.
/// - `http`: `Fri, 24 May 2013 00:00:00 GMT`, the IMF-fixdate of RFC 9110 (`Date`,
///   `Last-Modified`).
///
/// Parsing accepts exactly these shapes (ISO 8601 with or without milliseconds) and
/// returns nil for anything else.
public enum S3Time {
    /// `yyyyMMdd'T'HHmmss'Z'` for `date`, truncated to whole seconds.
    public static func amz(_ date: Date) -> String {
        let c = CivilTime(date)
        return pad(c.year, 4) + pad(c.month, 2) + pad(c.day, 2) + "T" + pad(c.hour, 2) + pad(c.minute, 2) + pad(c.second, 2) + "Z"
    }

    /// Parses `yyyyMMdd'T'HHmmss'Z'`.
    public static func parseAmz(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 16, b[8] == UInt8(ascii: "T"), b[15] == UInt8(ascii: "Z") else { return nil }
        guard let year = digits(b, 0, 4), let month = digits(b, 4, 2), let day = digits(b, 6, 2),
            let hour = digits(b, 9, 2), let minute = digits(b, 11, 2), let second = digits(b, 13, 2)
        else { return nil }
        return CivilTime(year: year, month: month, day: day, hour: hour, minute: minute, second: second)?.date
    }

    /// `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'` for `date`.
    public static func iso8601(_ date: Date) -> String {
        let c = CivilTime(date)
        return pad(c.year, 4) + "-" + pad(c.month, 2) + "-" + pad(c.day, 2) + "T" + pad(c.hour, 2) + ":" + pad(c.minute, 2) + ":"
            + pad(c.second, 2) + "." + pad(c.millisecond, 3) + "Z"
    }

    /// Parses `yyyy-MM-dd'T'HH:mm:ss[.SSS]'Z'`.
    public static func parseISO8601(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 20 || b.count == 24, b.last == UInt8(ascii: "Z"), b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"),
            b[10] == UInt8(ascii: "T"), b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":")
        else { return nil }
        guard let year = digits(b, 0, 4), let month = digits(b, 5, 2), let day = digits(b, 8, 2),
            let hour = digits(b, 11, 2), let minute = digits(b, 14, 2), let second = digits(b, 17, 2)
        else { return nil }
        var millisecond = 0
        if b.count == 24 {
            guard b[19] == UInt8(ascii: "."), let ms = digits(b, 20, 3) else { return nil }
            millisecond = ms
        }
        guard let whole = CivilTime(year: year, month: month, day: day, hour: hour, minute: minute, second: second)?.date else {
            return nil
        }
        return whole.addingTimeInterval(Double(millisecond) / 1000)
    }

    /// `EEE, dd MMM yyyy HH:mm:ss 'GMT'` (IMF-fixdate) for `date`.
    public static func http(_ date: Date) -> String {
        let c = CivilTime(date)
        return weekdays[c.weekday] + ", " + pad(c.day, 2) + " " + months[c.month - 1] + " " + pad(c.year, 4) + " " + pad(c.hour, 2) + ":"
            + pad(c.minute, 2) + ":" + pad(c.second, 2) + " GMT"
    }

    /// Parses an IMF-fixdate. The weekday must be spelled correctly but is not cross-checked.
    public static func parseHTTP(_ text: String) -> Date? {
        let b = Array(text.utf8)
        guard b.count == 29, b[3] == UInt8(ascii: ","), b[4] == UInt8(ascii: " "), b[7] == UInt8(ascii: " "),
            b[11] == UInt8(ascii: " "), b[16] == UInt8(ascii: " "), b[19] == UInt8(ascii: ":"), b[22] == UInt8(ascii: ":"),
            String(decoding: b[25...], as: UTF8.self) == " GMT"
        else { return nil }
        guard weekdays.contains(String(decoding: b[0..<3], as: UTF8.self)),
            let monthIndex = months.firstIndex(of: String(decoding: b[8..<11], as: UTF8.self)),
            let day = digits(b, 5, 2), let year = digits(b, 12, 4), let hour = digits(b, 17, 2), let minute = digits(b, 20, 2),
            let second = digits(b, 23, 2)
        else { return nil }
        return CivilTime(year: year, month: monthIndex + 1, day: day, hour: hour, minute: minute, second: second)?.date
    }

    private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    private static func digits(_ bytes: [UInt8], _ start: Int, _ count: Int) -> Int? {
        var value = 0
        for i in start..<(start + count) {
            let b = bytes[i]
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(b - UInt8(ascii: "0"))
        }
        return value
    }
}

/// A UTC calendar breakdown of an instant (proleptic Gregorian calendar), computed with
/// the days-from-civil arithmetic so that no Calendar or TimeZone is involved.
struct CivilTime {
    var year: Int
    var month: Int
    var day: Int
    var hour: Int
    var minute: Int
    var second: Int
    var millisecond: Int
    /// 0 is Sunday.
    var weekday: Int

    init(_ date: Date) {
        // Clamped so that no Date, however absurd, can trap the conversion to Int.
        let millis = date.timeIntervalSince1970 * 1000
        let totalMillis = millis.isFinite ? Int(max(-1e17, min(1e17, millis)).rounded()) : 0
        let (days, millisOfDay) = Self.floorDivide(totalMillis, 86_400_000)
        millisecond = millisOfDay % 1000
        let secondsOfDay = millisOfDay / 1000
        hour = secondsOfDay / 3600
        minute = secondsOfDay / 60 % 60
        second = secondsOfDay % 60
        weekday = Self.floorDivide(days + 4, 7).1  // 1970-01-01 was a Thursday
        // Shift the epoch to 0000-03-01 so that leap days fall at the end of a year, then
        // split into 400-year eras, years of the era and days of the year.
        let shifted = days + 719_468
        let (era, dayOfEra) = Self.floorDivide(shifted, 146_097)
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
    }

    /// Nil when a field is out of range (including February 30th and friends).
    init?(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        guard (1...12).contains(month), day >= 1, day <= Self.daysIn(month: month, year: year), (0...23).contains(hour),
            (0...59).contains(minute), (0...60).contains(second)
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
        self.millisecond = 0
        self.weekday = 0
    }

    var date: Date {
        let y = month <= 2 ? year - 1 : year
        let (era, yearOfEra) = Self.floorDivide(y, 400)
        let monthFromMarch = month > 2 ? month - 3 : month + 9
        let dayOfYear = (153 * monthFromMarch + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second
        return Date(timeIntervalSince1970: Double(seconds) + Double(millisecond) / 1000)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Quotient rounded towards negative infinity and the matching non-negative remainder.
    static func floorDivide(_ a: Int, _ b: Int) -> (Int, Int) {
        let q = a / b
        let r = a % b
        return r < 0 ? (q - 1, r + b) : (q, r)
    }
}
