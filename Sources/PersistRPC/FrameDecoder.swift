import NIOCore
import PersistCodec

/// Splits a byte stream into RPC payloads: the bytes after each 4-byte length prefix
/// (every RPC here shares `RPCFraming`). The length is checked before anything is
/// buffered for it, so a huge or zero length prefix fails the connection at once instead
/// of waiting for (or allocating) the announced bytes.
public struct RPCFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = [UInt8]

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let prefix = buffer.getBytes(at: buffer.readerIndex, length: RPCFraming.prefixLength) else {
            return .needMoreData
        }
        let length = try RPCFraming.payloadLength(prefix: prefix)
        guard buffer.readableBytes >= RPCFraming.prefixLength + length else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: RPCFraming.prefixLength)
        guard let payload = buffer.readBytes(length: length) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(payload))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws
        -> DecodingState
    {
        // Whole frames still buffered are delivered; a partial frame at EOF is dropped
        // (the peer went away mid-frame, so nobody is waiting for its answer).
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}
