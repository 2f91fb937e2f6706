package com.nibble.pinot;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.pinot.plugin.inputformat.avro.AvroRecordExtractor;
import org.apache.pinot.plugin.inputformat.avro.AvroRecordExtractorConfig;
import org.apache.pinot.spi.data.readers.GenericRow;
import org.apache.pinot.spi.stream.StreamMessageDecoder;
import org.apache.pinot.spi.utils.JsonUtils;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads Kafka messages in Confluent's wire format (magic byte 0, 4-byte big-endian schema id, Avro binary)
 * with the table's reader schema, resolving each writer schema by id from the schema registry once. A message
 * whose first byte is not 0 was published before the switch to the wire format: plain Avro written with
 * {@code unframed.writer.schema} (the stream's v1; every schema starts with a uuid string, whose length byte
 * is never 0).
 *
 * <p>Decoder properties ({@code stream.kafka.decoder.prop.*}): {@code schema} (reader schema),
 * {@code schema.registry.url} (Confluent-compatible API), {@code unframed.writer.schema} (optional; default:
 * the reader schema). A registry that does not answer stalls the partition's consumption, retried with
 * backoff: a message is never skipped for want of its schema.
 */
public class WireFormatAvroDecoder implements StreamMessageDecoder<byte[]> {
  private static final Logger LOGGER = LoggerFactory.getLogger(WireFormatAvroDecoder.class);
  private static final byte MAGIC = 0;
  private static final int HEADER_BYTES = 5;
  private static final int TIMEOUT_MS = 5_000;
  private static final long MAX_BACKOFF_MS = 30_000;

  private final Map<Integer, GenericDatumReader<GenericRecord>> _readersById = new HashMap<>();
  private Schema _readerSchema;
  private String _registryUrl;
  private String _topic;
  private GenericDatumReader<GenericRecord> _unframedReader;
  private AvroRecordExtractor _extractor;
  private BinaryDecoder _decoder;
  private GenericRecord _record;

  @Override
  public void init(Map<String, String> props, Set<String> fieldsToRead, String topicName) throws Exception {
    _readerSchema = new Schema.Parser().parse(required(props, "schema"));
    _registryUrl = required(props, "schema.registry.url").replaceAll("/+$", "");
    _topic = topicName;
    String unframed = props.get("unframed.writer.schema");
    Schema unframedWriter = unframed == null ? _readerSchema : new Schema.Parser().parse(unframed);
    _unframedReader = new GenericDatumReader<>(unframedWriter, _readerSchema);
    AvroRecordExtractorConfig config = new AvroRecordExtractorConfig();
    config.init(props);
    _extractor = new AvroRecordExtractor();
    _extractor.init(fieldsToRead, config);
  }

  @Override
  public GenericRow decode(byte[] payload, GenericRow destination) {
    return decode(payload, 0, payload.length, destination);
  }

  @Override
  public GenericRow decode(byte[] payload, int offset, int length, GenericRow destination) {
    GenericDatumReader<GenericRecord> reader = _unframedReader;
    if (length >= HEADER_BYTES && payload[offset] == MAGIC) {
      reader = readerFor(ByteBuffer.wrap(payload, offset + 1, 4).getInt());
      offset += HEADER_BYTES;
      length -= HEADER_BYTES;
    }
    _decoder = DecoderFactory.get().binaryDecoder(payload, offset, length, _decoder);
    try {
      _record = reader.read(_record, _decoder);
    } catch (IOException e) {
      throw new RuntimeException("cannot read a message of topic " + _topic + " with its writer schema", e);
    }
    return _extractor.extract(_record, destination);
  }

  private GenericDatumReader<GenericRecord> readerFor(int schemaId) {
    GenericDatumReader<GenericRecord> reader = _readersById.get(schemaId);
    if (reader == null) {
      reader = new GenericDatumReader<>(fetchWriterSchema(schemaId), _readerSchema);
      _readersById.put(schemaId, reader);
    }
    return reader;
  }

  private Schema fetchWriterSchema(int schemaId) {
    String url = _registryUrl + "/schemas/ids/" + schemaId;
    long backoffMs = 500;
    while (true) {
      try {
        return new Schema.Parser().parse(JsonUtils.stringToJsonNode(get(url)).get("schema").asText());
      } catch (IOException | RuntimeException e) {
        LOGGER.warn("schema registry: no writer schema for id {} of topic {} from {} ({}); retrying in {} ms",
            schemaId, _topic, url, e.toString(), backoffMs);
      }
      try {
        Thread.sleep(backoffMs);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException("interrupted while waiting for schema id " + schemaId, e);
      }
      backoffMs = Math.min(MAX_BACKOFF_MS, backoffMs * 2);
    }
  }

  private static String get(String url) throws IOException {
    HttpURLConnection connection = (HttpURLConnection) new URL(url).openConnection();
    connection.setConnectTimeout(TIMEOUT_MS);
    connection.setReadTimeout(TIMEOUT_MS);
    try {
      int status = connection.getResponseCode();
      InputStream body = status < 400 ? connection.getInputStream() : connection.getErrorStream();
      ByteArrayOutputStream bytes = new ByteArrayOutputStream();
      if (body != null) {
        try (body) {
          body.transferTo(bytes);
        }
      }
      String text = bytes.toString(StandardCharsets.UTF_8);
      if (status != 200) {
        throw new IOException("HTTP " + status + ": " + text);
      }
      return text;
    } finally {
      connection.disconnect();
    }
  }

  private static String required(Map<String, String> props, String key) {
    String value = props.get(key);
    if (value == null || value.isEmpty()) {
      throw new IllegalArgumentException("decoder property " + key + " is required");
    }
    return value;
  }
}
