// One JVM for many SRs: PixelMed's DicomSRValidator (Debian package pixelmed-apps, /usr/share/java/pixelmed.jar;
// its manifest Class-Path names the other Debian jars it needs) behind a stdin/stdout line protocol, so a test
// session pays the JVM start and the XSLT compilation once instead of once per file.
//
// Protocol: each line read from stdin is the path of a DICOM SR file. For each, the validator's own report is
// written to stdout (the text DicomSRValidator's main prints for the same options), then one line
// "#END ok" or "#END exception <class>: <message>" (a file PixelMed cannot read or validate).
// The options are those of: DicomSRValidator -checkcontentitemorder -checktemplateid FILE
// (describe off, match case of code meanings on, ambiguous-template check off).
//
// Run (JDK 17 needs the three XPath limits lifted, as for the Debian launcher):
//   java -Djdk.xml.xpathExprOpLimit=0 -Djdk.xml.xpathExprGrpLimit=0 -Djdk.xml.xpathTotalOpLimit=0 \
//        -cp /usr/share/java/pixelmed.jar deploy/local/pixelmed/SrValidatorServer.java
import com.pixelmed.validate.DicomSRValidator;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

public class SrValidatorServer {
    public static void main(String[] args) throws Exception {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        DicomSRValidator validator = new DicomSRValidator();
        out.println("#READY");
        String path;
        while ((path = in.readLine()) != null) {
            path = path.trim();
            if (path.isEmpty()) {
                continue;
            }
            try {
                // validate(file, describe, matchCaseOfCodeMeaning, checkAmbiguousTemplate, checkContentItemOrder,
                //          checkTemplateID): the same order DicomSRValidator.main uses.
                String report = validator.validate(path, false, true, false, true, true);
                out.print(report);
                if (!report.endsWith("\n")) {
                    out.println();
                }
                out.println("#END ok");
            } catch (Exception e) {
                String message = String.valueOf(e.getMessage()).replace('\n', ' ');
                out.println("#END exception " + e.getClass().getName() + ": " + message);
            }
        }
    }
}
