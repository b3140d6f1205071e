// The HAPI FHIR 8.8.0 instance validator as a line-protocol peer: one JVM per test session.
//
// Run (jars from `make deps`, deploy/local/hapi-fhir-validator/pom.xml, Maven Central):
//   java -cp '.cache/hapi-fhir-validator/lib/*' deploy/local/hapi-fhir-validator/ValidatorServer.java \
//        6.1.0=deploy/local/hapi-fhir-validator/us-core/6.1.0/resources 8.0.0=.../us-core/8.0.0/resources
//
// Each argument NAME=DIR adds a validation chain NAME whose PrePopulatedValidationSupport holds every
// StructureDefinition, ValueSet and CodeSystem (*.json) in DIR; chain "r4" is always there and knows only
// base FHIR R4 4.0.1 (hapi-fhir-validation-resources-r4). The US Core StructureDefinitions in the repo are
// differential only: SnapshotGeneratingValidationSupport generates every snapshot at start-up, so a profile
// that cannot be snapshotted fails the start, not a test. Codes of code systems not held here (LOINC,
// SNOMED CT: no terminology server) are warnings (UnknownCodeSystemWarningValidationSupport).
//
// Protocol (UTF-8, one JSON object per line):
//   out, once:  {"ready": true, "chains": {"r4": 0, "6.1.0": 28, ...}, "snapshots": {...}}
//   in:         {"id": "...", "chain": "6.1.0", "profile": "http://...|null", "resource": {...}}
//   out:        {"id": "...", "messages": [{"severity": "error", "location": "...", "messageId": "...",
//                                           "message": "..."}]}
// A request that cannot be handled at all is answered {"id": ..., "failure": "..."}. EOF on stdin ends it.

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.context.support.ValidationSupportContext;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationOptions;
import ca.uhn.fhir.validation.ValidationResult;
import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.UnknownCodeSystemWarningValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.hl7.fhir.r4.model.StructureDefinition;

public class ValidatorServer {
  private static final FhirContext CTX = FhirContext.forR4();

  record Chain(FhirValidator validator, int loaded, int snapshots) {}

  static ValidationSupportChain support(IValidationSupport profiles, boolean unknownCodeSystemsWarn) {
    ValidationSupportChain chain =
        new ValidationSupportChain(
            new DefaultProfileValidationSupport(CTX),
            profiles,
            new CommonCodeSystemsTerminologyService(CTX),
            new InMemoryTerminologyServerValidationSupport(CTX),
            new SnapshotGeneratingValidationSupport(CTX));
    if (unknownCodeSystemsWarn) {
      // No terminology server here: a code from a code system we do not hold (LOINC, SNOMED CT, ...) cannot be
      // checked and is reported as a warning instead of an error. Codes of code systems we hold are still checked.
      UnknownCodeSystemWarningValidationSupport unknown = new UnknownCodeSystemWarningValidationSupport(CTX);
      unknown.setNonExistentCodeSystemSeverity(IValidationSupport.IssueSeverity.WARNING);
      chain.addValidationSupport(unknown);
    }
    return chain;
  }

  static Chain chain(Path dir) throws Exception {
    List<IBaseResource> resources = new ArrayList<>();
    if (dir != null) {
      try (Stream<Path> files = Files.list(dir)) {
        for (Path file : files.filter(p -> p.toString().endsWith(".json")).sorted().toList()) {
          resources.add(CTX.newJsonParser().parseResource(Files.readString(file)));
        }
      }
    }
    // 1. The repo's StructureDefinitions are differential only: generate each snapshot from its base
    //    (R4 core, or another of them) with a chain that holds the sources as they are.
    PrePopulatedValidationSupport sources = new PrePopulatedValidationSupport(CTX);
    resources.forEach(sources::addResource);
    ValidationSupportChain generating = support(sources, false);
    ValidationSupportContext context = new ValidationSupportContext(generating);
    PrePopulatedValidationSupport profiles = new PrePopulatedValidationSupport(CTX);
    int snapshots = 0;
    for (IBaseResource resource : resources) {
      if (resource instanceof StructureDefinition differential) {
        String url = differential.getUrl();
        IBaseResource generated = generating.generateSnapshot(context, differential.copy(), url, url, url);
        if (!(generated instanceof StructureDefinition sd) || sd.getSnapshot().getElement().isEmpty()) {
          throw new IllegalStateException("no snapshot could be generated for " + url);
        }
        profiles.addStructureDefinition(sd);
        snapshots++;
      } else {
        profiles.addResource(resource);
      }
    }
    // 2. The validation chain sees only the generated forms.
    FhirInstanceValidator module = new FhirInstanceValidator(support(profiles, true));
    FhirValidator validator = CTX.newValidator().registerValidatorModule(module);
    return new Chain(validator, resources.size(), snapshots);
  }

  public static void main(String[] args) throws Exception {
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    Map<String, Chain> chains = new LinkedHashMap<>();
    chains.put("r4", chain(null));
    for (String arg : args) {
      String[] parts = arg.split("=", 2);
      chains.put(parts[0], chain(Path.of(parts[1])));
    }
    Gson gson = new Gson();
    JsonObject ready = new JsonObject();
    ready.addProperty("ready", true);
    JsonObject loaded = new JsonObject();
    JsonObject snapshots = new JsonObject();
    chains.forEach((name, c) -> {
      loaded.addProperty(name, c.loaded());
      snapshots.addProperty(name, c.snapshots());
    });
    ready.add("chains", loaded);
    ready.add("snapshots", snapshots);
    out.println(gson.toJson(ready));

    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = in.readLine()) != null) {
      if (line.isBlank()) {
        continue;
      }
      JsonObject answer = new JsonObject();
      try {
        JsonObject request = JsonParser.parseString(line).getAsJsonObject();
        answer.add("id", request.get("id"));
        Chain c = chains.get(request.get("chain").getAsString());
        if (c == null) {
          throw new IllegalArgumentException("unknown chain " + request.get("chain"));
        }
        ValidationOptions options = new ValidationOptions();
        if (request.has("profile") && !request.get("profile").isJsonNull()) {
          options.addProfile(request.get("profile").getAsString());
        }
        ValidationResult result = c.validator().validateWithResult(gson.toJson(request.get("resource")), options);
        JsonArray messages = new JsonArray();
        for (SingleValidationMessage m : result.getMessages()) {
          JsonObject message = new JsonObject();
          message.addProperty("severity", m.getSeverity().getCode());
          message.addProperty("location", m.getLocationString());
          message.addProperty("messageId", m.getMessageId());
          message.addProperty("message", m.getMessage());
          messages.add(message);
        }
        answer.add("messages", messages);
      } catch (Exception e) {
        answer.addProperty("failure", e.toString());
      }
      out.println(gson.toJson(answer));
    }
  }
}
