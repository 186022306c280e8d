// A hand-written 8x8 MAC with an 8-bit accumulator that SATURATES instead of wrapping: the
// deliberate defect of this example. WrapNet's accumulators wrap around (two's-complement
// overflow), and its cyclic activation relies on that; a saturating accumulator agrees with
// the reference only until the first overflow, which `wrapkit cosim mac` must report.
//
// The product is wrapped to the accumulator's 8 bits (as wrapkit's narrow MACs do), then
// added with a 9-bit sum that clamps to [-128, 127].
module saturating_mac (
    input  wire              clk,
    input  wire              rst,
    input  wire signed [7:0] act,
    input  wire signed [7:0] weight,
    input  wire              acc_en,
    input  wire              acc_clr,
    output reg  signed [7:0] acc_out
);
    reg signed [7:0] prod_q;
    reg              en_q;
    reg              clr_q;
    wire signed [15:0] full_product = act * weight;

    wire signed [7:0] base   = clr_q ? 8'sd0 : acc_out;
    wire signed [7:0] addend = en_q ? prod_q : 8'sd0;
    wire signed [8:0] wide   = base + addend;

    always @(posedge clk) begin
        if (rst) begin
            prod_q <= 8'sd0;
            en_q <= 1'b0;
            clr_q <= 1'b0;
            acc_out <= 8'sd0;
        end else begin
            prod_q <= full_product[7:0];
            en_q <= acc_en;
            clr_q <= acc_clr;
            if (wide > 9'sd127)
                acc_out <= 8'sd127;
            else if (wide < -9'sd128)
                acc_out <= -8'sd128;
            else
                acc_out <= wide[7:0];
        end
    end
endmodule
