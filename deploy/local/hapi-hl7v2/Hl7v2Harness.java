// An independent HL7 v2.5.1 validator and MLLP peer for radcds's tests, on HAPI HL7v2 2.6.0
// (Maven Central: ca.uhn.hapi:hapi-base:2.6.0 + ca.uhn.hapi:hapi-structures-v251:2.6.0, resolved by
// deploy/local/hapi-hl7v2/pom.xml into .cache/hapi-hl7v2/lib by `make deps`).
//
// Run with the JDK's single-file source launcher:
//   java -cp '.cache/hapi-hl7v2/lib/*' deploy/local/hapi-hl7v2/Hl7v2Harness.java MODE TABLE_0396_JSON [args]
// MODE:
//   validate            stdin: one base64 (UTF-8) message per line; stdout: one JSON report per line.
//   server PORT         a HAPI HL7Service (SimpleServer) MLLP receiver on 127.0.0.1:PORT that validates every
//                       message on receipt, answers AA when it has no error and AE otherwise, and prints one
//                       JSON report per received message; first line {"ready":PORT}; stops when stdin closes.
//   send HOST PORT      a HAPI client (Connection/Initiator): stdin lines are base64 messages to send; for each,
//                       stdout gets {"ack": base64 of the ACK as HAPI parsed it, "report": {...}} or {"error": ...}.
//
// A report is {"structure", "version" (MSH-12 as sent), "msh9", "errors": [...], "coded": [[location, system], ...]}.
// Every message is parsed into the v2.5.1 model whatever its MSH-12 (an ACK to a v2.3.1 order as well).
// The checks, all from HAPI's own v2.5.1 knowledge except the last two:
//   1. strict parse with the v2.5.1 model (CanonicalModelClassFactory 2.5.1; an unexpected segment throws;
//      HAPI's default validation on: primitive formats NM/SI/DT/TM/DTM, ID/IS/FT lengths, choice elements,
//      allowable segments, plus "only known segments");
//   2. every required segment and group of the message structure present, every required field non-empty,
//      no field with more repetitions than its cardinality or longer than its v2.5.1 length
//      (HAPI's Group.isRequired, Segment.isRequired/getMaxCardinality/getLength);
//   3. MSH-9 MSG.1, MSG.2 and MSG.3 non-empty (v2.5.1 2.A.47: all three are required) and MSG.3 the structure;
//   4. every CE/CWE/CNE coding system (component 3, and 6 when an alternate code is given) in HL7 table 0396
//      as kept in services/reporting/src/radcds_reporting/adapters/hl7v2/tables/hl7-table-0396.json (HL7 UTG, see its provenance).
// Nothing is logged but the reports (no message content on stderr).

import ca.uhn.hl7v2.AcknowledgmentCode;
import ca.uhn.hl7v2.DefaultHapiContext;
import ca.uhn.hl7v2.HL7Exception;
import ca.uhn.hl7v2.HapiContext;
import ca.uhn.hl7v2.app.Connection;
import ca.uhn.hl7v2.app.HL7Service;
import ca.uhn.hl7v2.model.Composite;
import ca.uhn.hl7v2.model.Group;
import ca.uhn.hl7v2.model.Message;
import ca.uhn.hl7v2.model.Segment;
import ca.uhn.hl7v2.model.Structure;
import ca.uhn.hl7v2.model.Type;
import ca.uhn.hl7v2.model.Varies;
import ca.uhn.hl7v2.parser.CanonicalModelClassFactory;
import ca.uhn.hl7v2.parser.EncodingCharacters;
import ca.uhn.hl7v2.parser.ParserConfiguration;
import ca.uhn.hl7v2.parser.PipeParser;
import ca.uhn.hl7v2.parser.UnexpectedSegmentBehaviourEnum;
import ca.uhn.hl7v2.protocol.ReceivingApplication;
import ca.uhn.hl7v2.protocol.impl.ApplicationRouterImpl;
import ca.uhn.hl7v2.util.Terser;
import ca.uhn.hl7v2.util.idgenerator.InMemoryIDGenerator;
import ca.uhn.hl7v2.validation.ValidationException;
import ca.uhn.hl7v2.validation.ValidationExceptionHandler;
import ca.uhn.hl7v2.validation.builder.support.DefaultValidationBuilder;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

public class Hl7v2Harness {

    /** HAPI's default validation plus "only segments the v2.5.1 structure knows". */
    public static class StrictRules extends DefaultValidationBuilder {
        @Override
        protected void configure() {
            super.configure();
            forAllVersions().message().all().onlyKnownSegments();
        }
    }

    /** Collects HAPI's validation exceptions instead of throwing at the first one. */
    static final class Collector implements ValidationExceptionHandler<Boolean> {
        final List<String> problems = new ArrayList<>();

        public void onExceptions(ValidationException... exceptions) {
            for (ValidationException e : exceptions) {
                problems.add("HAPI validation: " + e.getMessage());
            }
        }

        public Boolean result() {
            return problems.isEmpty();
        }

        public void setValidationSubject(Object subject) {}

        public boolean hasFailed() {
            return !problems.isEmpty();
        }
    }

    /** HL7 table 0396: literal identifiers and template patterns, read from the repository's JSON. */
    static final class Table0396 {
        final Map<String, String> codes = new LinkedHashMap<>();
        final List<Pattern> templates = new ArrayList<>();

        Table0396(Path file) throws Exception {
            String json = Files.readString(file, StandardCharsets.UTF_8);
            int t = json.indexOf("\"templates\"");
            int tEnd = json.indexOf("\"codes\"", t);
            Matcher tm = Pattern.compile("\"([^\"]+)\":\\s*\"((?:[^\"\\\\]|\\\\.)*)\"").matcher(json.substring(t, tEnd));
            List<String> templateNames = new ArrayList<>();
            while (tm.find()) {
                templateNames.add(tm.group(1));
                templates.add(Pattern.compile(tm.group(2).replace("\\\\", "\\")));
            }
            Matcher cm = Pattern.compile(
                    "\\{\\s*\"code\":\\s*\"((?:[^\"\\\\]|\\\\.)*)\",\\s*\"display\":\\s*\"(?:[^\"\\\\]|\\\\.)*\",\\s*\"status\":\\s*\"([^\"]*)\"")
                    .matcher(json);
            while (cm.find()) {
                if (!templateNames.contains(cm.group(1))) {
                    codes.put(cm.group(1), cm.group(2));
                }
            }
            if (codes.size() < 100 || templates.isEmpty()) {
                throw new IllegalStateException("table 0396 file could not be read: " + codes.size() + " codes");
            }
        }

        boolean contains(String name) {
            if (codes.containsKey(name)) {
                return true;
            }
            for (Pattern p : templates) {
                if (p.matcher(name).matches()) {
                    return true;
                }
            }
            return false;
        }
    }

    static final class Validator {
        final HapiContext context = new DefaultHapiContext();
        final Collector collector = new Collector();
        final Table0396 table;

        Validator(Table0396 table) {
            this.table = table;
            context.setModelClassFactory(new CanonicalModelClassFactory("2.5.1"));
            ParserConfiguration pc = context.getParserConfiguration();
            pc.setValidating(true);
            pc.setAllowUnknownVersions(false);
            pc.setUnexpectedSegmentBehaviour(UnexpectedSegmentBehaviourEnum.THROW_HL7_EXCEPTION);
            context.setValidationRuleBuilder(new StrictRules());
            context.setValidationExceptionHandlerFactory(ctx -> collector);
        }

        synchronized String validate(String er7) {
            collector.problems.clear();
            List<String> errors = new ArrayList<>();
            List<String[]> coded = new ArrayList<>();
            String structure = "";
            String version = "";
            String msh9 = "";
            try {
                Message message = context.getPipeParser().parse(er7);
                errors.addAll(collector.problems);
                structure = message.getName();
                check(message, errors, coded);
                msh9 = PipeParser.encode(((Segment) message.get("MSH")).getField(9, 0), EncodingCharacters.defaultInstance());
                String msh12 = new Terser(message).get("/MSH-12");
                version = msh12 == null ? "" : msh12;
            } catch (Exception e) {
                errors.addAll(collector.problems);
                errors.add("HAPI parse: " + e.getClass().getSimpleName() + ": " + e.getMessage());
            }
            return report(structure, version, msh9, errors, coded);
        }

        void check(Message message, List<String> errors, List<String[]> coded) throws HL7Exception {
            Terser terser = new Terser(message);
            String[] msg = {terser.get("/MSH-9-1"), terser.get("/MSH-9-2"), terser.get("/MSH-9-3")};
            for (int i = 0; i < 3; i++) {
                if (msg[i] == null || msg[i].isEmpty()) {
                    errors.add("MSH-9." + (i + 1) + ": required component missing (2.A.47 MSG)");
                }
            }
            if (msg[2] != null && !msg[2].isEmpty() && !msg[2].equals(message.getName())) {
                errors.add("MSH-9.3: " + msg[2] + " is not the structure HAPI parsed (" + message.getName() + ")");
            }
            walk(message, errors, coded);
        }

        void walk(Group group, List<String> errors, List<String[]> coded) throws HL7Exception {
            for (String name : group.getNames()) {
                Structure[] reps = group.getAll(name);
                int present = 0;
                for (Structure s : reps) {
                    if (!s.isEmpty()) {
                        present++;
                    }
                }
                if (group.isRequired(name) && present == 0) {
                    errors.add(group.getName() + "/" + name + ": required " + (group.isGroup(name) ? "group" : "segment")
                            + " missing");
                }
                for (Structure s : reps) {
                    if (s.isEmpty()) {
                        continue;
                    }
                    if (s instanceof Group) {
                        walk((Group) s, errors, coded);
                    } else {
                        segment((Segment) s, errors, coded);
                    }
                }
            }
        }

        void segment(Segment segment, List<String> errors, List<String[]> coded) throws HL7Exception {
            String seg = segment.getName();
            EncodingCharacters enc = EncodingCharacters.defaultInstance();
            for (int i = 1; i <= segment.numFields(); i++) {
                Type[] reps = segment.getField(i);
                int present = 0;
                for (Type t : reps) {
                    if (!t.isEmpty()) {
                        present++;
                    }
                }
                String where = seg + "-" + i;
                if (segment.isRequired(i) && present == 0) {
                    errors.add(where + ": required field missing");
                }
                int max = segment.getMaxCardinality(i);
                if (max > 0 && present > max) {
                    errors.add(where + ": " + present + " repetitions, at most " + max + " allowed");
                }
                int length = segment.getLength(i);
                for (Type t : reps) {
                    if (t.isEmpty()) {
                        continue;
                    }
                    if (length > 0 && !(seg.equals("MSH") && i <= 2)) {
                        int actual = PipeParser.encode(t, enc).length();
                        if (actual > length) {
                            errors.add(where + ": " + actual + " characters, longer than its v2.5.1 length " + length);
                        }
                    }
                    codedSystems(t, where, errors, coded);
                }
            }
        }

        void codedSystems(Type type, String where, List<String> errors, List<String[]> coded) throws HL7Exception {
            Type t = type instanceof Varies ? ((Varies) type).getData() : type;
            if (!(t instanceof Composite)) {
                return;
            }
            Composite c = (Composite) t;
            String kind = c.getName();
            Type[] parts = c.getComponents();
            if ((kind.equals("CE") || kind.equals("CWE") || kind.equals("CNE")) && parts.length >= 6) {
                for (int[] triple : new int[][] {{0, 1, 2}, {3, 4, 5}}) {
                    boolean used = !parts[triple[0]].isEmpty() || !parts[triple[1]].isEmpty();
                    if (!used) {
                        continue;
                    }
                    String location = where + "." + (triple[2] + 1);
                    String system = parts[triple[2]].encode();
                    coded.add(new String[] {location, system});
                    if (system.isEmpty()) {
                        errors.add(location + ": coding system missing (table 0396)");
                    } else if (!table.contains(system)) {
                        errors.add(location + ": coding system " + system + " is not in HL7 table 0396");
                    }
                }
                return;
            }
            for (int i = 0; i < parts.length; i++) {
                codedSystems(parts[i], where + "." + (i + 1), errors, coded);
            }
        }
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            switch (ch) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (ch < 0x20) {
                        b.append(String.format("\\u%04x", (int) ch));
                    } else {
                        b.append(ch);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    static String report(String structure, String version, String msh9, List<String> errors, List<String[]> coded) {
        StringBuilder b = new StringBuilder("{\"structure\":").append(json(structure));
        b.append(",\"version\":").append(json(version)).append(",\"msh9\":").append(json(msh9)).append(",\"errors\":[");
        for (int i = 0; i < errors.size(); i++) {
            b.append(i > 0 ? "," : "").append(json(errors.get(i)));
        }
        b.append("],\"coded\":[");
        for (int i = 0; i < coded.size(); i++) {
            b.append(i > 0 ? "," : "").append("[").append(json(coded.get(i)[0])).append(",").append(json(coded.get(i)[1]))
                    .append("]");
        }
        return b.append("]}").toString();
    }

    static String decode(String line) {
        return new String(Base64.getDecoder().decode(line.trim()), StandardCharsets.UTF_8);
    }

    static String encode(String text) {
        return Base64.getEncoder().encodeToString(text.getBytes(StandardCharsets.UTF_8));
    }

    /** A context that parses whatever arrives (v2.5.1 model, no validation): the receiving side validates itself. */
    static HapiContext lenientContext() {
        HapiContext ctx = new DefaultHapiContext();
        ctx.setModelClassFactory(new CanonicalModelClassFactory("2.5.1"));
        ctx.getParserConfiguration().setValidating(false);
        ctx.getParserConfiguration().setUnexpectedSegmentBehaviour(UnexpectedSegmentBehaviourEnum.ADD_INLINE);
        // ACK control ids from memory: HAPI's default generator writes an id_file into hapi.home.
        ctx.getParserConfiguration().setIdGenerator(new InMemoryIDGenerator());
        return ctx;
    }

    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        Validator validator = new Validator(new Table0396(Path.of(args[1])));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        switch (args[0]) {
            case "validate" -> {
                String line;
                while ((line = in.readLine()) != null) {
                    if (!line.isBlank()) {
                        out.println(validator.validate(decode(line)));
                    }
                }
            }
            case "server" -> server(validator, Integer.parseInt(args[2]), in, out);
            case "send" -> send(validator, args[2], Integer.parseInt(args[3]), in, out);
            default -> throw new IllegalArgumentException("mode must be validate, server or send");
        }
    }

    static void server(Validator validator, int port, BufferedReader in, PrintStream out) throws Exception {
        HapiContext ctx = lenientContext();
        HL7Service server = ctx.newServer(port, false);
        server.registerApplication(new ReceivingApplication<Message>() {
            public Message processMessage(Message message, Map<String, Object> metadata) throws HL7Exception {
                String raw = String.valueOf(metadata.get(ApplicationRouterImpl.RAW_MESSAGE_KEY));
                String report = validator.validate(raw);
                boolean ok = report.contains("\"errors\":[]");
                synchronized (out) {
                    out.println("{\"received\":" + json(encode(raw)) + ",\"report\":" + report + "}");
                }
                try {
                    return ok ? message.generateACK()
                            : message.generateACK(AcknowledgmentCode.AE, new HL7Exception("failed HAPI v2.5.1 validation"));
                } catch (java.io.IOException e) {
                    throw new HL7Exception(e);
                }
            }

            public boolean canProcess(Message message) {
                return true;
            }
        });
        server.startAndWait();
        out.println("{\"ready\":" + port + "}");
        while (in.readLine() != null) {
            // keep serving until the test closes stdin
        }
        server.stopAndWait();
        ctx.close();
    }

    static void send(Validator validator, String host, int port, BufferedReader in, PrintStream out) throws Exception {
        HapiContext outgoing = lenientContext();
        // The connection parses our ACKs with a strict v2.5.1 context (unexpected segments refused, HAPI's
        // default validation on, failing on the first error); each ACK is then run through the full validator.
        HapiContext client = new DefaultHapiContext();
        client.setModelClassFactory(new CanonicalModelClassFactory("2.5.1"));
        client.getParserConfiguration().setUnexpectedSegmentBehaviour(UnexpectedSegmentBehaviourEnum.THROW_HL7_EXCEPTION);
        client.setValidationRuleBuilder(new DefaultValidationBuilder());
        client.getParserConfiguration().setIdGenerator(new InMemoryIDGenerator());
        Connection connection = client.newClient(host, port, false);
        connection.getInitiator().setTimeoutMillis(20000);
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) {
                continue;
            }
            try {
                Message message = outgoing.getPipeParser().parse(decode(line));
                Message ack = connection.getInitiator().sendAndReceive(message);
                String text = client.getPipeParser().encode(ack);
                out.println("{\"ack\":" + json(encode(text)) + ",\"report\":" + validator.validate(text) + "}");
            } catch (Exception e) {
                out.println("{\"error\":" + json(e.getClass().getSimpleName() + ": " + e.getMessage()) + "}");
            }
        }
        connection.close();
        client.close();
        outgoing.close();
    }
}
